import ANELM
import Foundation
import XCTest

/// One case of `Tests/Fixtures/lora/lora.json` (tools/reference/lora_fixtures.py): a tiny model, adapters with scales,
/// and PEFT's logits at every prompt position (unmerged, and merged where given).
struct LoRAFixture: Decodable {
    struct Model: Decodable {
        let path: String
        let vocab_size: Int
    }
    struct Adapter: Decodable {
        let path: String
        let scale: Float
    }
    struct Case: Decodable {
        let name: String
        let model: Model
        let adapters: [Adapter]
        let prompt_ids: [Int]
        let logits: String
        let merged_logits: String?
    }
    let cases: [Case]

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func load() throws -> LoRAFixture {
        try JSONDecoder().decode(LoRAFixture.self, from: Data(contentsOf: fixtures.appendingPathComponent("lora/lora.json")))
    }

    static func path(_ relative: String) -> String { fixtures.appendingPathComponent(relative).path }

    static func floats(_ file: String) throws -> [Float] {
        let data = try Data(contentsOf: fixtures.appendingPathComponent("lora/" + file))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}

/// LoRA adapters against PEFT: logits within 2e-5 at f32, as side paths and merged, for Llama, Qwen2 and Gemma 3, and the
/// same adapter in MLX-LM's and llama.cpp's formats; scales, stacking, per-sequence adapters in one batch, and bad adapters.
final class LoRATests: XCTestCase {
    static let tolerance: Float = 2e-5

    func testLlamaPEFT() throws { try check("tiny-llama-peft") }
    func testQwen2PEFTRSLoRA() throws { try check("tiny-qwen2-peft") }
    func testGemma3PEFT() throws { try check("tiny-gemma3-peft") }
    func testMLXAdapter() throws { try check("tiny-llama-mlx") }
    func testGGUFAdapterOnHuggingFaceBase() throws { try check("tiny-llama-gguf") }
    func testHalfScale() throws { try check("tiny-llama-half") }
    func testTwoAdaptersStack() throws { try check("tiny-llama-stacked") }

    /// Loads the case's model with its adapters (side paths, then merged) and compares every position's logits.
    func check(_ name: String) throws {
        let fixture = try XCTUnwrap(try LoRAFixture.load().cases.first { $0.name == name }, "no case \(name)")
        let choices = fixture.adapters.map { LoRAChoice(path: LoRAFixture.path($0.path), scale: $0.scale) }
        var runs: [(merge: Bool, file: String)] = [(false, fixture.logits)]
        // PEFT's merged model where the fixture has it; otherwise the same adapters merged against the unmerged logits.
        runs.append((true, fixture.merged_logits ?? fixture.logits))
        for run in runs {
            let logits = try forward(fixture, choices, merge: run.merge)
            let expected = try LoRAFixture.floats(run.file)
            XCTAssertEqual(logits.count, expected.count)
            let worst = zip(logits, expected).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(worst, Self.tolerance, "\(name) \(run.merge ? "merged" : "side paths"): max |Δlogit| \(worst)")
        }
    }

    /// `anelm convert --lora`: the adapters added into the weights of the written file, which then computes PEFT's logits
    /// without any adapter — to a GGUF (llama.cpp's q/k row order) and to a Hugging Face folder, with adapters of all three formats.
    func testConvertWithAdapters() throws {
        for name in ["tiny-llama-peft", "tiny-qwen2-peft", "tiny-gemma3-peft", "tiny-llama-mlx", "tiny-llama-gguf", "tiny-llama-stacked"] {
            let fixture = try XCTUnwrap(try LoRAFixture.load().cases.first { $0.name == name }, "no case \(name)")
            let choices = fixture.adapters.map { LoRAChoice(path: LoRAFixture.path($0.path), scale: $0.scale) }
            let expected = try LoRAFixture.floats(fixture.merged_logits ?? fixture.logits)
            let folder = temporaryFile("lora-convert-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            let gguf = folder.appendingPathComponent("adapted.gguf").path
            let huggingFace = folder.appendingPathComponent("adapted").path
            // Gemma 3 converts within its format only (folder to folder).
            let outputs = name.hasPrefix("tiny-gemma3") ? [huggingFace] : [gguf, huggingFace]
            for output in outputs {
                try Converter.convert(model: LoRAFixture.path(fixture.model.path), output: output, type: .f32, lora: choices)
                let loaded = try ModelLoader.load(output, options: LoadOptions(precision: .f32))
                let logits = try loaded.model.forward(fixture.prompt_ids, state: loaded.model.makeState(), allPositions: true)
                XCTAssertEqual(logits.count, expected.count)
                let worst = zip(logits, expected).map { abs($0 - $1) }.max() ?? .infinity
                XCTAssertLessThan(worst, Self.tolerance, "\(name) converted to \(URL(fileURLWithPath: output).lastPathComponent): max |Δlogit| \(worst)")
            }
        }
        // An adapter for another model is refused before anything is written.
        let qwen = try XCTUnwrap(try LoRAFixture.load().cases.first { $0.name == "tiny-qwen2-peft" })
        let out = temporaryFile("lora-convert-\(UUID().uuidString).gguf").path
        XCTAssertThrowsError(
            try Converter.convert(model: LoRAFixture.path(qwen.model.path), output: out, type: .f32, lora: [LoRAChoice(path: LoRAFixture.path("lora/tiny-gemma3-peft"))]))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func forward(_ fixture: LoRAFixture.Case, _ choices: [LoRAChoice], merge: Bool = false) throws -> [Float] {
        let options = LoadOptions(precision: .f32, lora: choices, loraMerge: merge)
        let loaded = try ModelLoader.load(LoRAFixture.path(fixture.model.path), options: options)
        return try loaded.model.forward(fixture.prompt_ids, state: loaded.model.makeState(), allPositions: true)
    }

    func testScaleZeroIsTheBaseModel() throws {
        let fixture = try XCTUnwrap(try LoRAFixture.load().cases.first { $0.name == "tiny-llama-peft" })
        let base = try forward(fixture, [])
        let off = try forward(fixture, [LoRAChoice(path: LoRAFixture.path("lora/tiny-llama-peft"), scale: 0)])
        XCTAssertEqual(off, base)
        let on = try forward(fixture, [LoRAChoice(path: LoRAFixture.path("lora/tiny-llama-peft"), scale: 1)])
        XCTAssertGreaterThan(zip(on, base).map { abs($0 - $1) }.max() ?? 0, 0.05)
    }

    /// A batch whose sequences run with different adapter scales (awkward lengths: 1, 2, 7 rows; one without the adapter)
    /// gives each sequence the logits it has alone, at the default and f32 precisions.
    func testPerSequenceAdaptersInOneBatch() throws {
        let fixture = try XCTUnwrap(try LoRAFixture.load().cases.first { $0.name == "tiny-llama-stacked" })
        let choices = fixture.adapters.map { LoRAChoice(path: LoRAFixture.path($0.path), scale: $0.scale) }
        for precision in [Precision.f32, .auto] {
            let loaded = try ModelLoader.load(LoRAFixture.path(fixture.model.path), options: LoadOptions(precision: precision, lora: choices))
            let model = loaded.model
            let ids = fixture.prompt_ids
            let sequences: [(tokens: [Int], scales: [Float])] = [
                (Array(ids.prefix(7)), [1, 0]), (Array(ids.prefix(2)), [0, 0]), ([ids[3]], [0.5, 2]), (Array(ids.suffix(7)), [1, 0]), (Array(ids.prefix(2)), [1, 1]),
            ]
            var alone: [[Float]] = []
            for s in sequences {
                let state = model.makeState()
                state.loraScales = s.scales
                alone.append(try model.forward(s.tokens, state: state, allPositions: true))
            }
            let states = sequences.map { s -> ModelState in
                let state = model.makeState()
                state.loraScales = s.scales
                return state
            }
            let together = try model.forward(batch: zip(sequences, states).map { ($0.tokens, $1) }, allPositions: true)
            for (i, (a, b)) in zip(alone, together).enumerated() {
                let worst = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
                XCTAssertLessThan(worst, precision == .f32 ? 1e-5 : 1e-3, "sequence \(i) at \(precision)")
            }
            XCTAssertGreaterThan(zip(alone[0].prefix(fixture.model.vocab_size * 2), alone[1]).map { abs($0 - $1) }.max() ?? 0, 0.05)
        }
    }

    /// A generation's prompt cache is kept only for the same adapter scales.
    func testSessionPromptCacheIsKeyedByAdapters() throws {
        let fixture = try XCTUnwrap(try LoRAFixture.load().cases.first { $0.name == "tiny-llama-peft" })
        let loaded = try ModelLoader.load(
            LoRAFixture.path(fixture.model.path), options: LoadOptions(precision: .f32, lora: [LoRAChoice(path: LoRAFixture.path("lora/tiny-llama-peft"))]))
        let session = loaded.makeSession()
        let ids = fixture.prompt_ids
        var parameters = GenerationParameters(maxTokens: 1, stopAtEndOfSequence: false)
        let first = try session.generate(prompt: ids, parameters: parameters)
        XCTAssertEqual(first.prefilledTokens, ids.count)
        XCTAssertEqual(try session.generate(prompt: ids, parameters: parameters).prefilledTokens, 1)
        parameters.loraScales = [0]
        let off = try session.generate(prompt: ids, parameters: parameters)
        XCTAssertEqual(off.prefilledTokens, ids.count, "other adapter scales: nothing cached is reusable")
        let base = try ModelLoader.load(LoRAFixture.path(fixture.model.path), options: LoadOptions(precision: .f32)).makeSession()
        XCTAssertEqual(off.tokens, try base.generate(prompt: ids, parameters: GenerationParameters(maxTokens: 1, stopAtEndOfSequence: false)).tokens)
        parameters.loraScales = [0, 1]
        XCTAssertThrowsError(try session.generate(prompt: ids, parameters: parameters))
    }

    // MARK: Bad adapters

    func loadError(model: String, adapter: String, merge: Bool = false) -> String {
        do {
            _ = try ModelLoader.load(
                LoRAFixture.path("models/" + model), options: LoadOptions(precision: .f32, lora: [LoRAChoice(path: adapter)], loraMerge: merge))
            return "loaded"
        } catch let error as ANELMError {
            return error.message
        } catch {
            return "\(error)"
        }
    }

    func testAdapterForAnotherBaseNamesTheFirstMismatch() {
        // Gemma's up_proj is [80, 64], Llama's [160, 64]; its q_proj fits (both 64 → 64), so up_proj is the first mismatch.
        let message = loadError(model: "tiny-llama", adapter: LoRAFixture.path("lora/tiny-gemma3-peft"))
        XCTAssertTrue(message.contains("does not fit the model") && message.contains("model.layers.0.mlp.up_proj"), message)
        // Qwen2's k/v have one head of 16 (→ [16, 64]), Llama's two.
        let other = loadError(model: "tiny-qwen2", adapter: LoRAFixture.path("lora/tiny-llama-mlx"))
        XCTAssertTrue(other.contains("does not fit the model") && other.contains("k_proj"), other)
    }

    func testGGUFAdapterForAnotherArchitecture() {
        let message = loadError(model: "tiny-qwen2", adapter: LoRAFixture.path("lora/tiny-llama-lora.gguf"))
        XCTAssertTrue(message.contains("made for \"llama\""), message)
    }

    func testUnknownModule() throws {
        let folder = temporaryFile("lora-unknown")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data(#"{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}"#.utf8)
            .write(to: folder.appendingPathComponent("adapter_config.json"))
        let a = floatBytes([Float](repeating: 0.1, count: 2 * 64))
        try safetensorsData([
            ("base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight", [2, 64], a),
            ("base_model.model.model.layers.9.self_attn.q_proj.lora_B.weight", [64, 2], a),
        ]).write(to: folder.appendingPathComponent("adapter_model.safetensors"))
        let message = loadError(model: "tiny-llama", adapter: folder.path)
        XCTAssertTrue(message.contains("model.layers.9.self_attn.q_proj.weight") && message.contains("no linear layer"), message)
    }

    func testTruncatedAdapterFile() throws {
        let folder = temporaryFile("lora-truncated")
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.copyItem(at: URL(fileURLWithPath: LoRAFixture.path("lora/tiny-llama-peft")), to: folder)
        let weights = folder.appendingPathComponent("adapter_model.safetensors")
        let data = try Data(contentsOf: weights)
        try data.prefix(data.count - 1000).write(to: weights)
        let message = loadError(model: "tiny-llama", adapter: folder.path)
        XCTAssertTrue(message.contains("truncated"), message)
        try data.prefix(5).write(to: weights)
        XCTAssertNotEqual(loadError(model: "tiny-llama", adapter: folder.path), "loaded")
        let gguf = temporaryFile("truncated-lora.gguf")
        let ggufData = try Data(contentsOf: URL(fileURLWithPath: LoRAFixture.path("lora/tiny-llama-lora.gguf")))
        try ggufData.prefix(ggufData.count / 2).write(to: gguf)
        XCTAssertNotEqual(loadError(model: "tiny-llama", adapter: gguf.path), "loaded")
    }

    func testNotAnAdapter() {
        XCTAssertTrue(loadError(model: "tiny-llama", adapter: "/nonexistent/adapter").contains("no LoRA adapter"))
        let model = LoRAFixture.path("models/tiny-llama/config.json")
        XCTAssertTrue(loadError(model: "tiny-llama", adapter: model).contains("is not a LoRA adapter"))
    }

    func testScaleParsing() throws {
        XCTAssertEqual(try LoRAChoice(parsing: "a/b"), LoRAChoice(path: "a/b", scale: 1))
        XCTAssertEqual(try LoRAChoice(parsing: "a/b:0.5"), LoRAChoice(path: "a/b", scale: 0.5))
        XCTAssertEqual(try LoRAChoice(parsing: "c:/x:y"), LoRAChoice(path: "c:/x:y", scale: 1))
        XCTAssertThrowsError(try LoRAChoice(parsing: ":2"))
        XCTAssertThrowsError(try LoRAChoice(parsing: "a:nan"))
    }

    func testAdapterTable() throws {
        let loaded = try ModelLoader.load(
            LoRAFixture.path("models/tiny-llama"),
            options: LoadOptions(lora: [LoRAChoice(path: LoRAFixture.path("lora/tiny-llama-peft"), scale: 0.5), LoRAChoice(path: LoRAFixture.path("lora/tiny-llama-mlx"))]))
        let table = try XCTUnwrap(loaded.model.adapters)
        XCTAssertEqual(table.entries.map(\.id), [0, 1])
        XCTAssertEqual(table.entries.map(\.format), [.peft, .mlx])
        XCTAssertEqual(table.scales, [0.5, 1])
        try table.setScales([(1, 0.25)])
        XCTAssertEqual(table.scales, [0.5, 0.25])
        XCTAssertEqual(try table.requestScales([(0, 2)]), [2, 0])
        XCTAssertThrowsError(try table.requestScales([(2, 1)]))
        XCTAssertThrowsError(try table.setScales([(0, .infinity)]))
        XCTAssertNil(try ModelLoader.load(LoRAFixture.path("models/tiny-llama")).model.adapters)
    }

    func testMergedAdaptersKeepTheirScale() throws {
        let loaded = try ModelLoader.load(
            LoRAFixture.path("models/tiny-llama"), options: LoadOptions(lora: [LoRAChoice(path: LoRAFixture.path("lora/tiny-llama-peft"))], loraMerge: true))
        let table = try XCTUnwrap(loaded.model.adapters)
        XCTAssertThrowsError(try table.setScales([(0, 0.5)]))
        XCTAssertEqual(try table.requestScales([]), [1])
    }
}

/// A safetensors file of f32 tensors.
func safetensorsData(_ entries: [(String, [Int], [UInt8])]) -> Data {
    var json = "{"
    var bytes: [UInt8] = []
    for (i, (name, shape, data)) in entries.enumerated() {
        json += (i == 0 ? "" : ",") + "\"\(name)\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":[\(bytes.count),\(bytes.count + data.count)]}"
        bytes += data
    }
    json += "}"
    var out = Data()
    withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian) { out.append(contentsOf: $0) }
    out.append(contentsOf: Array(json.utf8))
    out.append(contentsOf: bytes)
    return out
}

extension LoRATests {
    /// The ANE lowering takes adapters merged into the weights (export-coreml merges them) and refuses side paths.
    func testANELoweringNeedsMergedAdapters() throws {
        let adapter = [LoRAChoice(path: LoRAFixture.path("lora/tiny-llama-peft"))]
        let side = try ModelLoader.load(LoRAFixture.path("models/tiny-llama"), options: LoadOptions(lora: adapter))
        XCTAssertThrowsError(try ANELowering.program(side, options: ANELoweringOptions(contextLength: 128))) { error in
            XCTAssertTrue("\(error)".contains("merged"), "\(error)")
        }
        let merged = try ModelLoader.load(LoRAFixture.path("models/tiny-llama"), options: LoadOptions(lora: adapter, loraMerge: true))
        XCTAssertNoThrow(try ANELowering.program(merged, options: ANELoweringOptions(contextLength: 128)))
    }
}
