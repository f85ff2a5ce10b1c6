import ANELM
import XCTest

/// One pass over several sequences equals one pass per sequence: mixed prefill and decode, different
/// lengths, sequences joining and leaving between steps.
final class BatchedForwardTests: XCTestCase {
    func fixture(_ name: String) -> String { ModelFixture.directory.appendingPathComponent(name).path }

    /// Deterministic pseudo-random prompts inside the vocabulary.
    func prompt(_ length: Int, seed: Int, vocabulary: Int) -> [Int] {
        var g = SeededGenerator(seed: UInt64(seed))
        return (0..<length).map { _ in Int.random(in: 0..<vocabulary, using: &g) }
    }

    /// Steps a batch and the same sequences one by one through a schedule of (sequence, new tokens), and
    /// compares every sequence's logits. Returns the largest difference.
    func compare(_ model: LanguageModel, schedule: [[(sequence: Int, tokens: [Int])]], allPositions: Bool = false) throws -> Float {
        var batched: [Int: ModelState] = [:]
        var single: [Int: ModelState] = [:]
        var worst: Float = 0
        for step in schedule {
            for (s, _) in step where batched[s] == nil {
                batched[s] = model.makeState()
                single[s] = model.makeState()
            }
            let together = try model.forward(batch: step.map { ($0.tokens, batched[$0.sequence]!) }, allPositions: allPositions)
            XCTAssertEqual(together.count, step.count)
            for (i, (s, tokens)) in step.enumerated() {
                let alone = try model.forward(tokens, state: single[s]!, allPositions: allPositions)
                XCTAssertEqual(together[i].count, alone.count)
                for (a, b) in zip(together[i], alone) { worst = max(worst, abs(a - b)) }
                XCTAssertEqual(batched[s]!.count, single[s]!.count)
            }
        }
        return worst
    }

    /// Three sequences: A and C start with prompts of different lengths, B joins in the second step while A and
    /// C decode, C leaves, D joins with a long prompt next to two decoding sequences.
    func mixedSchedule(vocabulary v: Int) -> [[(sequence: Int, tokens: [Int])]] {
        [
            [(0, prompt(7, seed: 1, vocabulary: v)), (2, prompt(12, seed: 2, vocabulary: v))],
            [(0, [3]), (1, prompt(5, seed: 3, vocabulary: v)), (2, [9])],
            [(0, [4]), (1, [5]), (2, [11])],
            [(1, [6]), (0, [7]), (3, prompt(19, seed: 4, vocabulary: v))],
            [(3, [1]), (1, [2]), (0, [8])],
        ]
    }

    func testLlamaFamilyF32() throws {
        for name in ["tiny-llama", "tiny-qwen2", "tiny-mistral"] {
            let loaded = try ModelLoader.load(fixture(name), options: LoadOptions(precision: .f32, threads: 2))
            let worst = try compare(loaded.model, schedule: mixedSchedule(vocabulary: loaded.model.vocabularySize))
            XCTAssertLessThanOrEqual(worst, 1e-5, name)
            let all = try compare(loaded.model, schedule: mixedSchedule(vocabulary: loaded.model.vocabularySize), allPositions: true)
            XCTAssertLessThanOrEqual(all, 1e-5, name + " all positions")
        }
    }

    func testGemma3SlidingWindowF32() throws {
        // Sliding window of 8: the prompts of 12 and 19 tokens cross it.
        for name in ["tiny-gemma3", "tiny-gemma3-softcap"] {
            let loaded = try ModelLoader.load(fixture(name), options: LoadOptions(precision: .f32, threads: 2))
            XCTAssertLessThanOrEqual(try compare(loaded.model, schedule: mixedSchedule(vocabulary: loaded.model.vocabularySize)), 1e-5, name)
        }
    }

    /// The fast path (quantized weights, f16 cache) on the default model: greedy continuations of three
    /// sequences decoded together are the tokens each gets alone.
    func testDefaultModelGreedyTokensEqual() throws {
        guard let path = defaultModelPath() else { throw XCTSkip("default model not installed") }
        let loaded = try ModelLoader.load(path, options: LoadOptions(threads: 2))
        let model = loaded.model
        let prompts = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village by the sea,"]
            .map { loaded.tokenizer.encode($0, addSpecialTokens: true) }
        func greedyAlone(_ prompt: [Int]) throws -> [Int] {
            let state = model.makeState()
            var next = argmax(try model.forward(prompt, state: state, allPositions: false))
            var out = [next]
            for _ in 0..<15 {
                next = argmax(try model.forward([next], state: state, allPositions: false))
                out.append(next)
            }
            return out
        }
        let expected = try prompts.map(greedyAlone)
        // Together: the first sequence starts alone, the others join one step later each, so prefill and
        // decode share passes.
        let states = prompts.map { _ in model.makeState() }
        var outputs: [[Int]] = [[], [], []]
        var step = 0
        while outputs.contains(where: { $0.count < 16 }) {
            var inputs: [(tokens: [Int], state: ModelState)] = []
            var members: [Int] = []
            for i in 0..<3 where i <= step && outputs[i].count < 16 {
                inputs.append((outputs[i].last.map { [$0] } ?? prompts[i], states[i]))
                members.append(i)
            }
            for (i, logits) in zip(members, try model.forward(batch: inputs, allPositions: false)) { outputs[i].append(argmax(logits)) }
            step += 1
        }
        XCTAssertEqual(outputs, expected)
    }

    func testBadBatchesAreErrors() throws {
        let loaded = try ModelLoader.load(fixture("tiny-llama"), options: LoadOptions(precision: .f32, threads: 1))
        let state = loaded.model.makeState()
        XCTAssertThrowsError(try loaded.model.forward(batch: [([1], state), ([2], state)], allPositions: false))
        XCTAssertThrowsError(try loaded.model.forward(batch: [([1], state), ([], loaded.model.makeState())], allPositions: false))
        XCTAssertThrowsError(try loaded.model.forward(batch: [], allPositions: false))
        XCTAssertEqual(state.count, 0, "a refused batch leaves its states as they were")
    }
}

extension BatchedForwardTests {
    /// xLSTM batches its recurrent states: prompts longer and shorter than a chunk, decoding next to prefill.
    /// Bit for bit: the cell runs per sequence as it does alone, and the f32 weight kernels sum a row in one
    /// order whatever the number of rows (1.0e-5 on an AVX2 machine before they did, over the 1e-5 bound).
    func testXLSTMRecurrentStatesF32() throws {
        for name in ["tiny-xlstm", "tiny-xlstm-fused", "tiny-xlstm-odd", "tiny-xlstm-capped"] {
            let loaded = try ModelLoader.load(fixture(name), options: LoadOptions(precision: .f32, threads: 2))
            let v = loaded.model.vocabularySize
            XCTAssertEqual(try compare(loaded.model, schedule: mixedSchedule(vocabulary: v)), 0, name)
            XCTAssertEqual(try compare(loaded.model, schedule: mixedSchedule(vocabulary: v), allPositions: true), 0, name)
        }
    }
}
