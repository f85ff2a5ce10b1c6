import ANELM
import Foundation
import XCTest

/// Gemma 3 lowered for the ANE (both functions) and run by the fp16 executor: the tiny random folders
/// (sliding window 8, local/global RoPE, soft-cap) and the real Gemma 3 270M.
final class ANELoweringGemma3Tests: XCTestCase {
    /// tiny-gemma3 (sliding / full / sliding, window 8, `long` = 92 tokens: 64 + a partial 28) and
    /// tiny-gemma3-softcap (final soft-cap 6), N = 128, B = 64: prompt-end logits against transformers,
    /// decode steps against anelm's f32 model.
    func testTinyGemma3() throws {
        for name in ["tiny-gemma3", "tiny-gemma3-softcap"] {
            let worst = try checkTinyFixture(name, options: ANELoweringOptions(contextLength: 128))
            // Measured 0.0025 / 0.0059 (top-20) and 0.0044 / 0.013 (all logits of 8 decode steps).
            XCTAssertLessThanOrEqual(worst.prompt, 0.015, name)
            XCTAssertLessThanOrEqual(worst.decode, 0.03, name)
        }
    }

    /// The Gemma graph's extra input and facts: `sliding_mask` beside `attention_mask`, the window in the
    /// metadata, local and global RoPE tables, one `gelu` per layer, the soft-cap as tanh per chunk.
    func testGemma3Graph() throws {
        let loaded = try ModelLoader.load(ModelFixture.directory.appendingPathComponent("tiny-gemma3-softcap").path)
        let program = try ANELowering.program(loaded, options: ANELoweringOptions(contextLength: 32, prefillBlock: 8))
        XCTAssertEqual(program.metadata["sliding_window"], 8)
        for function in program.functions {
            let g = function.graph
            XCTAssertEqual(Set(g.inputs.keys), [function.name == "decode" ? "token" : "tokens", "position_onehot", "attention_mask", "sliding_mask"])
            let names = Set(g.constants.keys.map { g.tensors[$0].name })
            XCTAssertTrue(names.isSuperset(of: ["rope_local_cos", "rope_global_cos", "softcap", "softcap_inverse", "embedding"]))
            XCTAssertEqual(g.ops.filter { $0.kind == .gelu }.count, 2)
            XCTAssertTrue(g.ops.filter { $0.kind == .gelu }.allSatisfy { $0.mode == "TANH_APPROXIMATION" })
            XCTAssertEqual(g.ops.filter { $0.kind == .tanh }.count, g.metadata["output_chunks"])
            // Sliding-window and global layers share one cache state of one shape (full-context slots).
            XCTAssertEqual(g.states.map(\.shape), [[2 * 2 * 1, g.states.first?.shape[1] ?? 0, 1, g.metadata["context_length"] ?? 0]])
        }
    }

    /// Gemma 3 270M (Q4_K_M GGUF dequantized to fp16), N = 512, B = 64: no op's output leaves fp16's
    /// finite range anywhere in either function (the residual stream is carried at 1/16, see
    /// `Gemma3ANELowering.residualScale`; unscaled, the residual adds overflow and the logits are NaN),
    /// the prompt-end logits stay within tolerance of transformers, and the greedy continuation (20
    /// steps of `decode` after `prefill`) equals the reference for ≥ 16 tokens.
    func testGemma3_270m() throws {
        guard let path = gemmaModelPath() else { throw XCTSkip("Gemma 3 270M not installed (scripts/fetch-gemma3)") }
        let fixture = try ModelFixture.load("gemma-3-270m")
        let loaded = try ModelLoader.load(path)
        let executor = ANEExecutor(program: try ANELowering.program(loaded), pool: loaded.pool)
        var overflows = [String]()
        executor.observe = { tensor, values in
            if tensor.dtype == .fp16, overflows.count < 5, values.contains(where: { !$0.isFinite }) { overflows.append(tensor.name) }
        }
        for name in ["question", "chat"] {
            let c = try XCTUnwrap(fixture.cases.first { $0.name == name })
            executor.reset()
            var step = try executor.forward(c.prompt_ids)
            let error = maxError(step.logits[...], c.last_logits_top20)
            print("ane gemma-3-270m \(name): prefill of \(c.prompt_ids.count) tokens, max top-20 logit error \(error)")
            XCTAssertLessThanOrEqual(error, Self.gemmaLogitTolerance, name)
            var generated = [Int]()
            for i in 0..<20 {
                generated.append(step.token)
                if i + 1 < 20 { step = try executor.forward([step.token]) }
            }
            let equal = zip(generated, c.greedy.ids).prefix { $0 == $1 }.count
            print("ane gemma-3-270m \(name): greedy equal to the reference for \(equal)/20 tokens")
            XCTAssertGreaterThanOrEqual(equal, 16, "\(name): greedy \(generated) vs \(c.greedy.ids.prefix(20))")
        }
        // A prompt of several blocks (200 tokens: 3 × 64 + 8), prompt-end logits only.
        let passage = try XCTUnwrap(fixture.cases.first { $0.name == "passage" })
        executor.reset()
        let error = maxError(try executor.forward(passage.prompt_ids).logits[...], passage.last_logits_top20)
        print("ane gemma-3-270m passage: prefill of \(passage.prompt_ids.count) tokens, max top-20 logit error \(error)")
        XCTAssertLessThanOrEqual(error, Self.gemmaLogitTolerance, "passage")
        XCTAssertEqual(overflows, [], "ops whose fp16 output overflowed")
    }

    /// Measured 0.019 (`question`), 0.013 (`chat`) and 0.013 (`passage`) on logits of ~25 (top-20, vs
    /// transformers); 3× headroom.
    static let gemmaLogitTolerance = 0.06
}
