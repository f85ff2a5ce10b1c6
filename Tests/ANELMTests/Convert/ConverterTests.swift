import ANELM
import Foundation
import XCTest

/// `Converter`: round trips between formats keep the model (same logits, same tokenizer), re-quantization picks
/// llama.cpp's types, and bad input (an existing output, a truncated source) is refused, leaving nothing behind.
final class ConverterTests: XCTestCase {
    static let tinyLlama = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/models/tiny-llama").path
    let tokens = [0, 17, 300, 45, 9, 511, 128, 64, 3]

    func scratch(_ name: String) -> String {
        let url = temporaryFile("convert-\(UUID().uuidString)").appendingPathComponent(name)
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        return url.path
    }

    func logits(_ path: String, precision: Precision = .f32) throws -> [Float] {
        let loaded = try ModelLoader.load(path, options: LoadOptions(precision: precision, threads: 1))
        return try loaded.model.forward(tokens, state: loaded.model.makeState(), allPositions: true)
    }

    func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        XCTAssertEqual(a.count, b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
    }

    func leftovers(beside path: String) -> [String] {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".partial") }
    }

    func testHuggingFaceToGGUFAndBack() throws {
        let gguf = scratch("tiny.gguf")
        let summary = try Converter.convert(model: Self.tinyLlama, output: gguf, type: .f32)
        XCTAssertEqual(summary.tensorsByType, [.f32: 30])
        let file = try GGUFFile(path: gguf)
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file.string("general.architecture"), "llama")
        XCTAssertEqual(file.int("llama.block_count"), 3)
        XCTAssertEqual(file.int("llama.attention.head_count_kv"), 2)
        XCTAssertEqual(file.int("general.file_type"), 0)
        XCTAssertEqual(file.string("tokenizer.ggml.model"), "gpt2")
        XCTAssertEqual(file.string("tokenizer.ggml.pre"), "llama-bpe")
        XCTAssertEqual(file.bool("tokenizer.ggml.add_bos_token"), true)
        XCTAssertNotNil(file.string("tokenizer.chat_template"))

        // The GGUF computes what the folder computes (q/k rows permuted, RoPE on adjacent pairs: same numbers).
        let original = try logits(Self.tinyLlama)
        XCTAssertLessThan(maxDifference(original, try logits(gguf)), 1e-4)

        // The tokenizer and template made the trip.
        let a = try ModelLoader.loadText(Self.tinyLlama)
        let b = try ModelLoader.loadText(gguf)
        let text = "Hello world! 123 <|eot_id|> ünïcode"
        XCTAssertEqual(a.tokenizer.encode(text), b.tokenizer.encode(text))
        XCTAssertEqual(a.chatTemplate, b.chatTemplate)
        XCTAssertEqual(a.endOfSequenceIds.isSubset(of: b.endOfSequenceIds) || b.endOfSequenceIds.isSubset(of: a.endOfSequenceIds), true)

        // Back to a folder: every tensor is the original, byte for byte (the permutation undone exactly).
        let folder = scratch("tiny-back")
        try Converter.convert(model: gguf, output: folder, type: .f32)
        let back = try HFModelFolder(path: folder)
        let orig = try HFModelFolder(path: Self.tinyLlama)
        XCTAssertEqual(Set(back.tensors.tensorNames), Set(orig.tensors.tensorNames))
        for name in orig.tensors.tensorNames {
            let x = try XCTUnwrap(try orig.tensors.tensor(named: name))
            let y = try XCTUnwrap(try back.tensors.tensor(named: name))
            XCTAssertEqual(x.shape, y.shape, name)
            XCTAssertTrue(Array(x.data) == Array(y.data), name)
        }
        XCTAssertEqual(try logits(folder), original)
        let c = try ModelLoader.loadText(folder)
        XCTAssertEqual(c.tokenizer.encode(text), a.tokenizer.encode(text))
        XCTAssertEqual(c.chatTemplate, a.chatTemplate)
    }

    func testRequantizeTypesFollowLlamaCpp() throws {
        let f32 = scratch("tiny-f32.gguf")
        try Converter.convert(model: Self.tinyLlama, output: f32, type: .f32)
        let reference = try logits(f32)
        // The tiny random model amplifies weight error about eightfold into its logits (its weights are large): the logit
        // bounds are the measured errors with headroom; the per-weight bounds are each type's resolution.
        let tolerances: [(TensorType, (weights: Float, logits: Float))] = [
            (.f16, (3e-4, 3e-3)), (.bf16, (3e-3, 2e-2)), (.q8_0, (8e-3, 6e-2)), (.q4_K, (6e-2, 0.4)),
        ]
        for (type, tolerance) in tolerances {
            let out = scratch("tiny-\(type).gguf")
            try Converter.convert(model: f32, output: out, type: type)
            let file = try GGUFFile(path: out)
            for info in file.tensorInfos {
                let expected: TensorType
                if info.shape.count == 1 {
                    expected = .f32
                } else if type == .q4_K {
                    expected = .q5_0  // rows of 64 or 160 are not 256-blocks: llama-quantize's fallback
                } else {
                    expected = type
                }
                XCTAssertEqual(TensorType(rawValue: info.ggmlType), expected, "\(type): \(info.name)")
            }
            let got = try logits(out)
            let rms = { (v: [Float]) in (v.map { Double($0 * $0) }.reduce(0, +) / Double(v.count)).squareRoot() }
            let relative = rms(zip(reference, got).map { $0 - $1 }) / rms(reference)
            XCTAssertLessThan(relative, Double(tolerance.logits), "\(type)")
            // Per weight: the stored tensor dequantized is the f32 one within the type's resolution.
            let source = try GGUFFile(path: f32)
            for info in file.tensorInfos {
                let x = try WeightMatrix.dequantized(XCTUnwrap(try source.tensor(named: info.name)))
                let y = try WeightMatrix.dequantized(XCTUnwrap(try file.tensor(named: info.name)))
                let a = UnsafeBufferPointer(start: x.data.assumingMemoryBound(to: Float.self), count: x.rows * x.cols)
                let b = UnsafeBufferPointer(start: y.data.assumingMemoryBound(to: Float.self), count: y.rows * y.cols)
                let e = rms(zip(a, b).map { $0 - $1 }) / rms(Array(a))
                XCTAssertLessThan(e, Double(tolerance.weights), "\(type): \(info.name)")
            }
            // Re-quantizing to the type a tensor already has copies it.
            let again = scratch("again-\(type).gguf")
            try Converter.convert(model: out, output: again, type: type)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: again)), try Data(contentsOf: URL(fileURLWithPath: out)), "\(type)")
        }
    }

    func testStoredTypeRules() {
        XCTAssertEqual(Converter.storedType(ggufName: "blk.0.attn_norm.weight", shape: [576], requested: .q4_0), .f32)
        XCTAssertEqual(Converter.storedType(ggufName: "blk.0.attn_q.bias", shape: [1, 64], requested: .q8_0), .f32)
        XCTAssertEqual(Converter.storedType(ggufName: "token_embd.weight", shape: [49152, 576], requested: .q4_1), .q4_1)
        XCTAssertEqual(Converter.storedType(ggufName: "blk.0.ffn_down.weight", shape: [576, 1536], requested: .q6_K), .q6_K)
        XCTAssertEqual(Converter.storedType(ggufName: "blk.0.ffn_up.weight", shape: [1536, 576], requested: .q6_K), .q8_0)
        XCTAssertEqual(Converter.storedType(ggufName: "blk.0.ffn_up.weight", shape: [1536, 576], requested: .q5_K), .q5_1)
        XCTAssertEqual(Converter.storedType(ggufName: "blk.0.ffn_up.weight", shape: [8, 40], requested: .q8_0), .f16)
    }

    func testExistingOutputNeedsForce() throws {
        let out = scratch("exists.gguf")
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: out))
        XCTAssertThrowsError(try Converter.convert(model: Self.tinyLlama, output: out, type: .f16)) { XCTAssertTrue("\($0)".contains("--force"), "\($0)") }
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "keep me")
        try Converter.convert(model: Self.tinyLlama, output: out, type: .f16, force: true)
        XCTAssertEqual(try GGUFFile(path: out).int("general.file_type"), 1)
        XCTAssertEqual(leftovers(beside: out), [])
        XCTAssertThrowsError(try Converter.convert(model: out, output: out, type: .q8_0, force: true)) { XCTAssertTrue("\($0)".contains("is the model"), "\($0)") }
    }

    func testTruncatedOrCorruptSourceIsRefused() throws {
        let gguf = scratch("whole.gguf")
        try Converter.convert(model: Self.tinyLlama, output: gguf, type: .f16)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: gguf))
        let truncated = scratch("truncated.gguf")
        try bytes.prefix(bytes.count * 2 / 3).write(to: URL(fileURLWithPath: truncated))
        let out = scratch("never.gguf")
        XCTAssertThrowsError(try Converter.convert(model: truncated, output: out, type: .q8_0)) { XCTAssertTrue("\($0)".contains("truncated"), "\($0)") }
        var corrupt = bytes
        corrupt[0] = 0x58
        try corrupt.write(to: URL(fileURLWithPath: truncated))
        XCTAssertThrowsError(try Converter.convert(model: truncated, output: out, type: .q8_0)) { XCTAssertTrue("\($0)".contains("magic"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        XCTAssertEqual(leftovers(beside: out), [])
        XCTAssertThrowsError(try Converter.convert(model: gguf, output: scratch("q.folder"), type: .q8_0)) { XCTAssertTrue("\($0)".contains("Hugging Face"), "\($0)") }
    }

    func testPerplexityWindows() throws {
        let loaded = try ModelLoader.load(Self.tinyLlama, options: LoadOptions(precision: .f32, threads: 1))
        let text = String(repeating: "The quick brown fox jumps over the lazy dog. 0123456789 ", count: 20)
        let context = 32
        let result = try Perplexity.measure(model: loaded.model, tokenizer: loaded.tokenizer, text: text, context: context)
        // The same number computed plainly: each window from scratch, all positions at once, BOS first.
        let ids = loaded.tokenizer.encode(text, parseSpecialTokens: false, addSpecialTokens: true)
        XCTAssertEqual(ids.first, 0)  // tiny-llama adds BOS
        let vocabulary = loaded.model.vocabularySize
        var nll = 0.0
        var count = 0
        for w in 0..<(ids.count / context) {
            var window = Array(ids[(w * context)..<((w + 1) * context)])
            window[0] = 0
            let logits = try loaded.model.forward(window, state: loaded.model.makeState(), allPositions: true)
            for j in (context / 2)..<(context - 1) {
                let row = logits[(j * vocabulary)..<((j + 1) * vocabulary)].map(Double.init)
                let top = row.max()!
                let logSum = log(row.map { exp($0 - top) }.reduce(0, +)) + top
                nll += logSum - row[window[j + 1]]
                count += 1
            }
        }
        XCTAssertEqual(result.windows, ids.count / context)
        XCTAssertEqual(result.tokensScored, count)
        XCTAssertEqual(result.perplexity, exp(nll / Double(count)), accuracy: 1e-3 * result.perplexity)
        XCTAssertGreaterThan(result.uncertainty, 0)
        XCTAssertThrowsError(try Perplexity.measure(model: loaded.model, tokenizer: loaded.tokenizer, text: "too short", context: context)) {
            XCTAssertTrue("\($0)".contains("at least"), "\($0)")
        }
    }

    /// xLSTM converts folder to folder in f16/bf16 (GGUF has no xLSTM architecture in llama.cpp; see README), and runs
    /// within the types' rounding of the f32 original.
    func testXLSTMFolderInHalfPrecision() throws {
        let xlstm = URL(fileURLWithPath: Self.tinyLlama).deletingLastPathComponent().appendingPathComponent("tiny-xlstm").path
        let xlstmTokens = [1, 20, 33, 7, 100]
        func run(_ path: String) throws -> [Float] {
            let loaded = try ModelLoader.load(path, options: LoadOptions(precision: .f32, threads: 1))
            return try loaded.model.forward(xlstmTokens, state: loaded.model.makeState(), allPositions: true)
        }
        let reference = try run(xlstm)
        // Relative RMS logit error; bf16's 8-bit mantissa (±0.4% per weight) is amplified by the tiny random model.
        for (type, bound) in [(TensorType.f16, 2e-3), (.bf16, 2e-2)] {
            let out = scratch("xlstm-\(type)")
            try Converter.convert(model: xlstm, output: out, type: type)
            let folder = try HFModelFolder(path: out)
            XCTAssertEqual(folder.config["torch_dtype"]?.stringValue, type == .f16 ? "float16" : "bfloat16")
            for name in folder.tensors.tensorNames { XCTAssertEqual(try folder.tensors.tensor(named: name)?.type, type, name) }
            let got = try run(out)
            let rms = { (v: [Float]) in (v.map { Double($0 * $0) }.reduce(0, +) / Double(v.count)).squareRoot() }
            let relative = rms(zip(reference, got).map { $0 - $1 }) / rms(reference)
            XCTAssertLessThan(relative, bound, "\(type)")
        }
    }

    /// xLSTM in anelm's GGUF form: f32 computes what the folder computes, exactly; back to a folder every tensor and the
    /// configuration are the original's; quantized, the logits stay within a stated relative error of f32, and the default
    /// precision's quantized kernels within half of it of the f32 run on the same file.
    func testXLSTMToGGUFAndBack() throws {
        let fixtures = URL(fileURLWithPath: Self.tinyLlama).deletingLastPathComponent()
        for name in ["tiny-xlstm", "tiny-xlstm-fused", "tiny-xlstm-capped"] {
            let xlstm = fixtures.appendingPathComponent(name).path
            let fixture = try XLSTMFixture.load(name)
            func run(_ path: String) throws -> [Float] {
                let loaded = try ModelLoader.load(path, options: LoadOptions(precision: .f32, threads: 1))
                return try loaded.model.forward(fixture.prompt_ids, state: loaded.model.makeState(), allPositions: true)
            }
            let reference = try run(xlstm)
            let gguf = scratch("\(name).gguf")
            try Converter.convert(model: xlstm, output: gguf, type: .f32)
            let file = try GGUFFile(path: gguf)
            XCTAssertEqual(file.string("general.architecture"), "xlstm")
            XCTAssertEqual(file.int("xlstm.num_hidden_layers"), fixture.model.num_layers)
            XCTAssertEqual(file.int("xlstm.vocab_size"), fixture.model.vocab_size)
            XCTAssertEqual(try run(gguf), reference, "\(name): f32 GGUF")

            let back = scratch("\(name)-back")
            try Converter.convert(model: gguf, output: back, type: .f32)
            let original = try HFModelFolder(path: xlstm)
            let returned = try HFModelFolder(path: back)
            XCTAssertEqual(Set(returned.tensors.tensorNames), Set(original.tensors.tensorNames))
            for tensor in original.tensors.tensorNames {
                let a = try XCTUnwrap(try original.tensors.tensor(named: tensor))
                let b = try XCTUnwrap(try returned.tensors.tensor(named: tensor))
                XCTAssertEqual(a.shape, b.shape, tensor)
                XCTAssertEqual(try Converter.dequantize(a), try Converter.dequantize(b), tensor)
            }
            let before = try XLSTMConfiguration(.huggingFace(original)).configFields
            XCTAssertEqual(try XLSTMConfiguration(.huggingFace(returned)).configFields, before, name)
            XCTAssertEqual(try run(back), reference, "\(name): folder from the GGUF")

            // Quantized: relative RMS logit error against f32. These tiny random models amplify weight error about tenfold (their
            // gates are spread over several units and exponentiated): bf16 weights, transformers' own dtype for xLSTM-7B, give
            // 1.2% on tiny-xlstm (testXLSTMFolderInHalfPrecision); Q8_0 gives 1.7–6.4%, Q4_0 12–45% (measured 2026-12-05).
            let rms = { (v: [Float]) in (v.map { Double($0 * $0) }.reduce(0, +) / Double(v.count)).squareRoot() }
            let relative = { (a: [Float], b: [Float]) in rms(zip(a, b).map { $0 - $1 }) / rms(a) }
            for (type, bound) in [(TensorType.q8_0, 0.08), (.q4_0, 0.6)] {
                let quantized = scratch("\(name)-\(type).gguf")
                try Converter.convert(model: gguf, output: quantized, type: type)
                let file = try GGUFFile(path: quantized)
                XCTAssertTrue(file.tensorInfos.contains { $0.typeName == "\(type)".lowercased() || $0.typeName == "\(type)" }, "\(name): no \(type) tensor")
                let exact = try run(quantized)
                let error = relative(reference, exact)
                XCTAssertLessThan(error, bound, "\(name) \(type)")
                // The default precision (quantized kernels, quantized activations) on the same file stays near its f32 run.
                let loaded = try ModelLoader.load(quantized, options: LoadOptions(precision: .auto, threads: 1))
                let fast = try loaded.model.forward(fixture.prompt_ids, state: loaded.model.makeState(), allPositions: true)
                let kernels = relative(exact, fast)
                print("\(name) \(type): relative RMS logit error \(error) against f32, \(kernels) between precisions")
                XCTAssertLessThan(kernels, 1e-3, "\(name) \(type): default precision against f32 on the same file (measured ≤ 2e-4)")
            }
        }
    }
}
