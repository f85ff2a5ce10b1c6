import ANELM
import XCTest

/// `--precision f32` against transformers: logits within 1e-3 and identical greedy continuations,
/// for the default model (from its GGUF) and tiny random Llama, Llama-3-RoPE, Qwen2 and Mistral folders.
final class ModelParityTests: XCTestCase {
    func testDefaultModelF32() throws { try checkReferenceExact("smollm2-135m-instruct") }
    func testTinyLlama() throws { try checkReferenceExact("tiny-llama") }
    func testTinyLlama3RoPEF16Weights() throws { try checkReferenceExact("tiny-llama3-rope") }
    func testTinyQwen2ShardedWithBias() throws { try checkReferenceExact("tiny-qwen2") }
    func testTinyMistralBF16HeadDim() throws { try checkReferenceExact("tiny-mistral") }

    /// The default (fast) path: quantized weights × 16-bit quantized activations. Reported (README
    /// "Fidelity"), and held near the level measured when it was written: 280/280, 7/7, 0.003.
    func testDefaultPathFidelity() throws {
        let f = try measureDefaultPathFidelity("smollm2-135m-instruct")
        XCTAssertEqual(f.top1, f.cases)
        XCTAssertGreaterThanOrEqual(f.agreement, 0.95)
        XCTAssertLessThan(f.worstLogit, 0.02)
    }
}

extension XCTestCase {
    /// The default (fast) path against a fixture: greedy tokens equal to the reference before the first
    /// divergence, top-1 agreement at the prompt end, and the largest top-20 logit error; printed.
    func measureDefaultPathFidelity(_ fixtureName: String, modelPath: String? = nil) throws -> (agreement: Double, top1: Int, cases: Int, worstLogit: Double) {
        let fixture = try ModelFixture.load(fixtureName)
        let loaded = try ModelLoader.load(try modelPath ?? fixture.modelPath(), options: LoadOptions(precision: .auto))
        let vocab = fixture.model.vocab_size
        var agreeing = 0
        var total = 0
        var worstLogit = 0.0
        var top1Agree = 0
        for c in fixture.cases {
            let logits = try loaded.model.forward(c.prompt_ids, state: loaded.model.makeState(), allPositions: false)
            let last = logits[(logits.count - vocab)...]
            worstLogit = max(worstLogit, maxError(last, c.last_logits_top20))
            if last.indices.max(by: { last[$0] < last[$1] }).map({ $0 - last.startIndex }) == c.last_logits_top20.ids[0] { top1Agree += 1 }
            let result = try loaded.makeSession().generate(
                prompt: c.prompt_ids, parameters: GenerationParameters(maxTokens: c.greedy.max_new_tokens, stopAtEndOfSequence: false))
            agreeing += zip(result.tokens, c.greedy.ids).prefix { $0 == $1 }.count
            total += c.greedy.ids.count
        }
        let agreement = Double(agreeing) / Double(total)
        print(
            "fidelity default path \(fixtureName) (\(Kernels.isaName)): greedy agreement \(agreeing)/\(total) = \(String(format: "%.3f", agreement)), top-1 at prompt end \(top1Agree)/\(fixture.cases.count), max top-20 logit error \(String(format: "%.3f", worstLogit))"
        )
        return (agreement, top1Agree, fixture.cases.count, worstLogit)
    }

    /// `--precision f32` against a fixture: logits within 1e-3 (every position where given) and the greedy
    /// continuation token for token.
    func checkReferenceExact(_ fixtureName: String, modelPath: String? = nil) throws {
        let fixture = try ModelFixture.load(fixtureName)
        let loaded = try ModelLoader.load(try modelPath ?? fixture.modelPath(), options: LoadOptions(precision: .f32))
        let vocab = fixture.model.vocab_size
        XCTAssertEqual(loaded.model.vocabularySize, vocab)
        for c in fixture.cases {
            // The tokenizer gives the reference's prompt ids (chat cases: of the rendered template).
            XCTAssertEqual(loaded.tokenizer.encode(c.text, addSpecialTokens: c.add_special_tokens), c.prompt_ids, "\(fixtureName)/\(c.name): tokenization")
            // Logits at the last prompt position (or every position, where the fixture has them).
            let all = c.all_position_logits != nil
            let logits = try loaded.model.forward(c.prompt_ids, state: loaded.model.makeState(), allPositions: all)
            let last = logits[(logits.count - vocab)...]
            var worst = maxError(last, c.last_logits_top20)
            if let fixed = c.last_logits_fixed { worst = max(worst, maxError(last, fixed)) }
            if let full = c.last_logits { worst = max(worst, maxError(last, full)) }
            if let file = c.last_logits_file {
                let data = try Data(contentsOf: ModelFixture.directory.appendingPathComponent(file))
                let full: [Double] = data.withUnsafeBytes { $0.bindMemory(to: Float.self).map { Double($0) } }
                XCTAssertEqual(full.count, vocab)
                worst = max(worst, maxError(last, full))
            }
            if let rows = c.all_position_logits {
                XCTAssertEqual(rows.count * vocab, logits.count)
                for (p, row) in rows.enumerated() { worst = max(worst, maxError(logits[(p * vocab)..<((p + 1) * vocab)], row)) }
            }
            XCTAssertLessThanOrEqual(worst, ModelFixture.tolerance, "\(fixtureName)/\(c.name): max logit error \(worst)")

            // Greedy continuation, EOS ignored, token for token.
            let session = loaded.makeSession()
            let result = try session.generate(
                prompt: c.prompt_ids, parameters: GenerationParameters(maxTokens: c.greedy.max_new_tokens, stopAtEndOfSequence: false))
            let firstDiff = zip(result.tokens, c.greedy.ids).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            XCTAssertEqual(
                result.tokens, c.greedy.ids,
                "\(fixtureName)/\(c.name): diverges at step \(firstDiff ?? -1) (reference margin there \(firstDiff.map { c.greedy.margins[$0] } ?? 0))")
            print("parity \(fixtureName)/\(c.name): \(result.tokens.count) greedy tokens equal: \(result.tokens == c.greedy.ids), max logit error \(worst)")
        }
    }
}
