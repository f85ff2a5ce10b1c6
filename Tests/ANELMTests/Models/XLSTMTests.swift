import ANELM
import Foundation
import XCTest

/// One `Tests/Fixtures/models/tiny-xlstm*.json` file (schema `anelm-xlstm-fixture/1`, see the README there).
struct XLSTMFixture: Decodable {
    struct Model: Decodable {
        let name: String
        let path: String
        let vocab_size: Int
        let num_layers: Int
        let state_floats: Int
        let chunk_size: Int
    }
    struct Greedy: Decodable {
        let max_new_tokens: Int
        let ids: [Int]
        let top1_logits: [Double]
        let margins: [Double]
    }
    let model: Model
    let prompt_ids: [Int]
    let prompt_logits_file: String
    let stepwise_logits_file: String
    let greedy: Greedy

    static func load(_ name: String) throws -> XLSTMFixture {
        try JSONDecoder().decode(XLSTMFixture.self, from: Data(contentsOf: ModelFixture.directory.appendingPathComponent(name + ".json")))
    }

    var modelPath: String { ModelFixture.directory.appendingPathComponent(model.path).path }

    /// A `.f32` file of logits, `[prompt position][vocab]`.
    func logits(_ file: String) throws -> [Float] {
        let data = try Data(contentsOf: ModelFixture.directory.appendingPathComponent(file))
        let values = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertEqual(values.count, prompt_ids.count * model.vocab_size, "\(file): size")
        return values
    }
}

/// xLSTM (transformers' xLSTMForCausalLM) in f32 against the reference on tiny random-weight models: every
/// prompt position within 1e-3 both chunkwise and token by token, identical greedy continuations, and a state
/// whose size does not depend on the sequence length.
final class XLSTMTests: XCTestCase {
    static let tolerance: Float = 1e-3
    static let fixtures = ["tiny-xlstm", "tiny-xlstm-odd", "tiny-xlstm-fused", "tiny-xlstm-capped"]

    func load(_ fixture: XLSTMFixture, precision: Precision = .f32) throws -> LoadedModel {
        let loaded = try ModelLoader.load(fixture.modelPath, options: LoadOptions(precision: precision, threads: 2))
        XCTAssertEqual(loaded.architecture, "xLSTMForCausalLM")
        XCTAssertEqual(loaded.model.vocabularySize, fixture.model.vocab_size)
        return loaded
    }

    /// Largest |a - b| and where it is.
    func worst(_ a: [Float], _ b: [Float]) -> (error: Float, index: Int) {
        var result: (Float, Int) = (0, -1)
        for i in 0..<min(a.count, b.count) where abs(a[i] - b[i]) > result.0 || a[i].isNaN { result = (abs(a[i] - b[i]), i) }
        return result
    }

    func checkPromptLogits(_ name: String) throws {
        let fixture = try XLSTMFixture.load(name)
        let loaded = try load(fixture)
        let vocab = fixture.model.vocab_size
        XCTAssertEqual(fixture.prompt_ids.count, 200)

        // (a) The whole prompt in one forward: chunkwise kernel plus recurrent remainder.
        let whole = try loaded.model.forward(fixture.prompt_ids, state: loaded.model.makeState(), allPositions: true)
        XCTAssertEqual(whole.count, fixture.prompt_ids.count * vocab)
        let (wholeError, wholeAt) = worst(whole, try fixture.logits(fixture.prompt_logits_file))
        XCTAssertLessThanOrEqual(wholeError, Self.tolerance, "\(name): whole prompt, max error at position \(wholeAt / vocab)")

        // (b) Token by token through the recurrent step.
        let state = loaded.model.makeState()
        var stepwise: [Float] = []
        for token in fixture.prompt_ids { stepwise += try loaded.model.forward([token], state: state, allPositions: false) }
        XCTAssertEqual(state.count, fixture.prompt_ids.count)
        let (stepError, stepAt) = worst(stepwise, try fixture.logits(fixture.stepwise_logits_file))
        XCTAssertLessThanOrEqual(stepError, Self.tolerance, "\(name): token by token, max error at position \(stepAt / vocab)")
        print("xlstm \(name): max logit error whole \(wholeError), token by token \(stepError)")
    }

    func checkGreedy(_ name: String) throws {
        let fixture = try XLSTMFixture.load(name)
        let loaded = try load(fixture)
        let session = loaded.makeSession()
        let parameters = GenerationParameters(maxTokens: fixture.greedy.max_new_tokens, stopAtEndOfSequence: false)
        let result = try session.generate(prompt: fixture.prompt_ids, parameters: parameters)
        let firstDiff = zip(result.tokens, fixture.greedy.ids).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        XCTAssertEqual(
            result.tokens, fixture.greedy.ids,
            "\(name): diverges at step \(firstDiff ?? -1) (reference margin there \(firstDiff.map { fixture.greedy.margins[$0] } ?? 0))")
        // A second request sharing only part of the history: the state cannot rewind, so the session restarts
        // the sequence and must give the same answer again.
        let again = try session.generate(prompt: fixture.prompt_ids, parameters: parameters)
        XCTAssertEqual(again.tokens, fixture.greedy.ids, "\(name): after a restart")
    }

    func testPromptLogitsDefaultSizes() throws { try checkPromptLogits("tiny-xlstm") }
    func testPromptLogitsOddSizesWithBias() throws { try checkPromptLogits("tiny-xlstm-odd") }
    func testPromptLogitsFusedWeightsInferencePieces() throws { try checkPromptLogits("tiny-xlstm-fused") }
    func testPromptLogitsSoftCapsChunk7() throws { try checkPromptLogits("tiny-xlstm-capped") }

    func testGreedyContinuations() throws {
        for name in Self.fixtures { try checkGreedy(name) }
    }

    func testStateSizeIsConstant() throws {
        let fixture = try XLSTMFixture.load("tiny-xlstm")
        let loaded = try load(fixture)
        let state = loaded.model.makeState()
        let expected = fixture.model.state_floats * MemoryLayout<Float>.size
        XCTAssertEqual(state.byteSize, expected)
        let tokens = (0..<10_000).map { ($0 * 7919 + 13) % fixture.model.vocab_size }
        _ = try loaded.model.forward(Array(tokens[..<100]), state: state, allPositions: false)
        XCTAssertEqual(state.count, 100)
        let after100 = state.byteSize
        _ = try loaded.model.forward(Array(tokens[100...]), state: state, allPositions: false)
        XCTAssertEqual(state.count, 10_000)
        XCTAssertEqual(after100, expected)
        XCTAssertEqual(state.byteSize, after100)
        // Restarting is the one rewind a recurrent state allows.
        XCTAssertThrowsError(try state.truncate(to: 50)) { XCTAssertTrue($0 is ANELMError) }
        try state.truncate(to: 0)
        XCTAssertEqual(state.count, 0)
        XCTAssertEqual(state.byteSize, expected)
    }

    /// Past 32k tokens, which no KV-cache model here can hold at this size of context: greedy generation token by token
    /// (the default precision, as `anelm generate` runs it) keeps a state of the same bytes, finite logits, and a
    /// process that does not grow (the token history is the only thing that does: 8 bytes a token).
    func testGenerationPast32kTokensInConstantMemory() throws {
        let fixture = try XLSTMFixture.load("tiny-xlstm")
        let loaded = try load(fixture, precision: .auto)
        let session = GenerationSession(model: loaded.model, tokenizer: loaded.tokenizer, endOfSequenceIds: [])
        let steps = 33_000
        var stateBytes: [Int: Int] = [:]
        var residentAt1000 = 0
        var nonFinite = 0
        var count = 0
        var parameters = GenerationParameters(maxTokens: steps, stopAtEndOfSequence: false)
        parameters.sampling.temperature = 0
        let result = try session.generate(prompt: fixture.prompt_ids, parameters: parameters) { chunk in
            count += 1
            if count == 100 || count == steps { stateBytes[count] = session.stateBytes }
            if count == 1000 { residentAt1000 = ProcessMemory.resident() ?? 0 }
            if !(0..<fixture.model.vocab_size).contains(chunk.token) { nonFinite += 1 }
            return true
        }
        XCTAssertEqual(result.tokens.count, steps)
        XCTAssertEqual(result.finishReason, .length)
        XCTAssertEqual(nonFinite, 0)
        XCTAssertEqual(stateBytes[100], fixture.model.state_floats * MemoryLayout<Float>.size)
        XCTAssertEqual(stateBytes[steps], stateBytes[100], "state bytes after 100 and after \(steps) tokens")
        // The greedy start is the reference's.
        XCTAssertEqual(Array(result.tokens.prefix(fixture.greedy.ids.count)), fixture.greedy.ids)
        // A KV cache at this model's width would have grown by 2 × layers × 64 × 4 bytes a token, ~33 MB here.
        let grown = (ProcessMemory.resident() ?? 0) - residentAt1000
        XCTAssertLessThan(grown, 8 << 20, "the process grew \(grown >> 10) KiB over \(steps - 1000) tokens")
        // The last logits are finite: the state did not overflow.
        let state = loaded.model.makeState()
        _ = try loaded.model.forward(fixture.prompt_ids + Array(result.tokens.dropLast()), state: state, allPositions: false)
        let last = try loaded.model.forward([result.tokens.last ?? 0], state: state, allPositions: false)
        XCTAssertTrue(last.allSatisfy(\.isFinite))
    }

    /// A restarted state gives the same logits as a fresh one.
    func testTruncateToZeroResets() throws {
        let fixture = try XLSTMFixture.load("tiny-xlstm-odd")
        let loaded = try load(fixture)
        let prompt = Array(fixture.prompt_ids[..<40])
        let fresh = try loaded.model.forward(prompt, state: loaded.model.makeState(), allPositions: false)
        let state = loaded.model.makeState()
        _ = try loaded.model.forward(Array(fixture.prompt_ids[100...]), state: state, allPositions: false)
        try state.truncate(to: 0)
        XCTAssertEqual(try loaded.model.forward(prompt, state: state, allPositions: false), fresh)
    }

    /// The default precision (weights as stored) stays close to the reference too.
    func testDefaultPrecisionGreedy() throws {
        let fixture = try XLSTMFixture.load("tiny-xlstm-odd")
        let loaded = try load(fixture, precision: .auto)
        let result = try loaded.makeSession().generate(
            prompt: fixture.prompt_ids, parameters: GenerationParameters(maxTokens: fixture.greedy.max_new_tokens, stopAtEndOfSequence: false))
        XCTAssertEqual(result.tokens, fixture.greedy.ids)
    }

    // MARK: - Bad input

    /// Copies `tiny-xlstm-odd` to a temporary folder with config.json edited (or a weight file replaced).
    func brokenModel(_ edit: (inout [String: Any]) -> Void, dropWeights: Bool = false) throws -> String {
        let source = URL(fileURLWithPath: try XLSTMFixture.load("tiny-xlstm-odd").modelPath)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-xlstm-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: source, to: folder)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        let configURL = folder.appendingPathComponent("config.json")
        guard var config = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any] else {
            throw XCTSkip("config.json is not an object")
        }
        edit(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        if dropWeights {
            // Same file, but a model one layer deeper than stored: block 2's weights are missing.
            config["num_hidden_layers"] = 3
            config["num_blocks"] = 3
            try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        }
        return folder.path
    }

    func assertLoadFails(_ path: String, mentioning fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ModelLoader.load(path, options: LoadOptions(precision: .f32, threads: 1)), file: file, line: line) { error in
            guard let error = error as? ANELMError else { return XCTFail("not an ANELMError: \(error)", file: file, line: line) }
            XCTAssertTrue(error.message.contains(fragment), "'\(error.message)' does not mention '\(fragment)'", file: file, line: line)
        }
    }

    func testBadConfigurations() throws {
        assertLoadFails(try brokenModel { $0["num_heads"] = 5 }, mentioning: "not a multiple of num_heads")
        assertLoadFails(try brokenModel { $0["num_heads"] = 0 }, mentioning: "num_heads must be positive")
        assertLoadFails(try brokenModel { $0["chunk_size"] = 0 }, mentioning: "chunk_size must be positive")
        assertLoadFails(try brokenModel { $0["max_inference_chunksize"] = -4 }, mentioning: "max_inference_chunksize must be positive")
        assertLoadFails(try brokenModel { $0["weight_mode"] = "sparse" }, mentioning: "weight_mode")
        assertLoadFails(try brokenModel { $0["gate_soft_cap"] = -1.0 }, mentioning: "gate_soft_cap")
        assertLoadFails(try brokenModel { $0["qk_dim_factor"] = 0.001 }, mentioning: "below 1")
        assertLoadFails(try brokenModel { $0["v_dim_factor"] = "wide" }, mentioning: "v_dim_factor")
        assertLoadFails(try brokenModel { $0["hidden_size"] = 1 << 40 }, mentioning: "hidden_size")
        // Sizes that parse but do not match the stored tensors.
        assertLoadFails(try brokenModel { $0["ffn_proj_factor"] = 2.0 }, mentioning: "ffn.proj_down.weight' has shape")
        assertLoadFails(try brokenModel { $0["weight_mode"] = "fused" }, mentioning: "qkv_opreact.weight' is missing")
        assertLoadFails(try brokenModel({ _ in }, dropWeights: true), mentioning: "backbone.blocks.2.")
    }

    func testBadInputs() throws {
        let fixture = try XLSTMFixture.load("tiny-xlstm")
        let loaded = try load(fixture)
        let state = loaded.model.makeState()
        XCTAssertThrowsError(try loaded.model.forward([], state: state, allPositions: false))
        XCTAssertThrowsError(try loaded.model.forward([fixture.model.vocab_size], state: state, allPositions: false))
        XCTAssertThrowsError(try loaded.model.forward([-1], state: state, allPositions: false))
        let other = try ModelLoader.load(try XLSTMFixture.load("tiny-xlstm-odd").modelPath, options: LoadOptions(precision: .f32, threads: 1))
        XCTAssertThrowsError(try loaded.model.forward([1], state: other.model.makeState(), allPositions: false)) {
            XCTAssertTrue(($0 as? ANELMError)?.message.contains("state does not belong") ?? false)
        }
        XCTAssertEqual(state.count, 0)
    }
}

