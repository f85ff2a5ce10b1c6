import ANELM
import ANELMTestSupport
import Foundation
import XCTest

/// The sentence-embedding functions for the Neural Engine (`ANEEncoderLowering`), run on the fp16 executor
/// against the CPU embedder in f32 and sentence-transformers' vectors. Stated bound: cosine ≥ 0.999 for every
/// text at fp16, whatever function (padding) it runs on.
final class ANEEncoderTests: XCTestCase {
    static let minimumCosine = 0.999

    /// Every fixture text on every function long enough for it (so most run with padding masked), against the
    /// CPU pipeline and the fixture; returns the worst cosine against the CPU.
    func checkFunctions(
        _ embedder: SentenceEmbedder, _ program: ANEProgram, lengths: [Int], fixture: EmbeddingFixture, file: StaticString = #filePath, line: UInt = #line
    ) throws -> Double {
        let executor = ANEExecutor(program: program)
        let layout = try ANEEmbeddingLayout(lengths: lengths)
        var worst = 1.0
        var runs = 0
        for c in fixture.cases {
            let input = embedder.input(c.text)
            let cpu = try XCTUnwrap(try embedder.embed([input]).first)
            for length in lengths where length >= input.tokens.count {
                let outputs = try executor.run(ANEEncoderLowering.functionName(length: length), layout.inputs(input.tokens, length: length))
                let vector = try XCTUnwrap(outputs["embedding"])
                XCTAssertEqual(vector.count, embedder.dimensions, file: file, line: line)
                let similarity = cosine(vector, cpu)
                worst = min(worst, similarity)
                runs += 1
                XCTAssertGreaterThanOrEqual(similarity, Self.minimumCosine, "\(c.text.debugDescription) on length \(length)", file: file, line: line)
                XCTAssertGreaterThanOrEqual(
                    cosine(vector, c.embedding), Self.minimumCosine, "\(c.text.debugDescription) vs sentence-transformers", file: file, line: line)
                if embedder.normalizes { XCTAssertEqual(vector.reduce(0) { $0 + $1 * $1 }, 1, accuracy: 2e-3, file: file, line: line) }
            }
            XCTAssertGreaterThanOrEqual(try layout.length(for: input.tokens.count), input.tokens.count, file: file, line: line)
        }
        print("ANE encoder: worst cosine against the CPU embedder \(worst) over \(runs) runs of \(fixture.cases.count) texts, lengths \(lengths)")
        return worst
    }

    func testTinyBertFunctionsMatchTheCPUEmbedder() throws {
        let fixture = try EmbeddingFixture.load("tiny-bert")
        let embedder = try EmbedderLoader.loadPipeline(EmbeddingTests.tinyFolder, precision: .f32, threads: 2)
        // Its 64 positions cap both default lengths: one function.
        XCTAssertEqual(try ANEEncoderLowering.program(embedder).functions.map(\.name), ["embed_64"])
        let program = try ANEEncoderLowering.program(embedder, lengths: [16, 64, 100])
        XCTAssertEqual(program.functions.map(\.name), ["embed_16", "embed_64"])
        XCTAssertEqual(program.metadata["context_length"], 64)
        for f in program.functions {
            let g = f.graph
            XCTAssertEqual(Set(g.inputs.keys), ["tokens", "attention_mask"])
            XCTAssertEqual(g.outputs.keys.sorted(), ["embedding"])
            XCTAssertTrue(g.states.isEmpty)
            // Every activation channels-first (1, C, 1, S); every linear a conv; GELU exact.
            for op in g.ops where op.kind != .const_ {
                if let out = op.output { XCTAssertEqual(g.tensors[out].shape.count, 4, g.tensors[out].name) }
            }
            XCTAssertEqual(g.ops.filter { $0.kind == .conv }.count, 2 * 6)
            XCTAssertTrue(g.ops.filter { $0.kind == .gelu }.allSatisfy { $0.mode == "EXACT" })
        }
        _ = try checkFunctions(embedder, program, lengths: [16, 64], fixture: fixture)
    }

    func testMiniLMFunctionsMatchTheCPUEmbedder() throws {
        guard let path = defaultEmbedderPath() else { throw XCTSkip("all-MiniLM-L6-v2 not installed (scripts/test installs it): skipping its ANE check") }
        let fixture = try EmbeddingFixture.load("minilm")
        let embedder = try EmbedderLoader.loadPipeline(path, precision: .f32)
        let program = try ANEEncoderLowering.program(embedder)
        XCTAssertEqual(program.functions.map(\.name), ["embed_128", "embed_512"])
        _ = try checkFunctions(embedder, program, lengths: [128, 512], fixture: fixture)
    }

    func testPoolingModesInTheGraph() throws {
        // Each pooling mode, unnormalized (a copy of the tiny model without its Normalize module), against the CPU pipeline:
        // direction and magnitude.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-pooling-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: EmbeddingTests.tinyFolder, to: folder)
        defer { try? FileManager.default.removeItem(at: folder) }
        let modules = """
            [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
            """
        try Data(modules.utf8).write(to: folder.appendingPathComponent("modules.json"))
        let texts = ["a man is eating food.", "The quick brown fox jumps over the lazy dog."]
        for mode in ["mean", "cls", "max", "mean_sqrt_len_tokens"] {
            let pooling = #"{"embedding_dimension": 64, "pooling_mode": "\#(mode)"}"#
            try Data(pooling.utf8).write(to: folder.appendingPathComponent("1_Pooling/config.json"))
            let embedder = try EmbedderLoader.loadPipeline(folder, precision: .f32, threads: 2)
            XCTAssertFalse(embedder.normalizes)
            let executor = ANEExecutor(program: try ANEEncoderLowering.program(embedder, lengths: [32]))
            for text in texts {
                let input = embedder.input(text)
                let expected = try XCTUnwrap(try embedder.embed([input]).first)
                let vector = try XCTUnwrap(try executor.run("embed_32", ANEEmbeddingLayout(lengths: [32]).inputs(input.tokens, length: 32))["embedding"])
                XCTAssertGreaterThanOrEqual(cosine(vector, expected), Self.minimumCosine, "\(mode): \(text)")
                let norms = [vector, expected].map { v in v.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot() }
                XCTAssertEqual(norms[0] / norms[1], 1, accuracy: 0.01, "\(mode): the vector's magnitude")
            }
        }
    }

    func testExportedPackageReadsBackAndPassesTheLint() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-encoder-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for format in [ANEWeightFormat.fp16, .int8, .lut6] {
            let path = folder.appendingPathComponent("tiny-bert-\(format.rawValue).mlpackage").path
            var messages = [String]()
            let summary = try CoreMLPackage.exportEmbedder(
                folder: EmbeddingTests.tinyFolder.path, to: path, lengths: [16, 64], weights: format, threads: 2, progress: { messages.append($0) })
            XCTAssertEqual(summary.operations.map(\.function), ["embed_16", "embed_64"])
            XCTAssertTrue(messages.contains { $0.contains("sequence lengths 16, 64, mean pooling, L2-normalized") }, "\(messages)")
            let info = try ANEPackageInfo.read(package: path)
            XCTAssertEqual(info.functions, ["embed_16", "embed_64"])
            XCTAssertEqual(
                info.encoder,
                ANEPackageInfo.Encoder(sequenceLengths: [16, 64], dimensions: 64, pooling: "mean", normalized: true, maxSeqLength: 24, lowercase: false))
            let lint = try ANELint(package: path)
            XCTAssertTrue(lint.violations.isEmpty, lint.text)
            let program = try MILProgramReader(package: path)
            XCTAssertEqual(program.functions.map(\.name).sorted(), ["embed_16", "embed_64"])
        }
        let unwritten = folder.appendingPathComponent("x.mlpackage").path
        XCTAssertThrowsError(try CoreMLPackage.exportEmbedder(folder: EmbeddingTests.tinyFolder.path, to: unwritten, lengths: []))
    }
}
