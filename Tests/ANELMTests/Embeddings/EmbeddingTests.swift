import ANELM
import ANELMTestSupport
import Foundation
import XCTest

/// `Tests/Fixtures/embeddings/*.json` (written by tools/reference/embedding_fixtures.py from sentence-transformers).
struct EmbeddingFixture: Decodable {
    struct Case: Decodable {
        let text: String
        let ids: [Int]
        let embedding: [Float]
    }
    struct TokenCase: Decodable {
        let text: String
        let ids: [Int]
        let decoded: String
    }
    let max_seq_length: Int
    let dimensions: Int
    let cases: [Case]
    let tokenizer_cases: [TokenCase]?

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/embeddings")

    static func load(_ name: String) throws -> EmbeddingFixture {
        try JSONDecoder().decode(EmbeddingFixture.self, from: Data(contentsOf: directory.appendingPathComponent(name + ".json")))
    }
}

func cosine(_ a: [Float], _ b: [Float]) -> Double {
    var dot = 0.0
    var na = 0.0
    var nb = 0.0
    for (x, y) in zip(a, b) {
        dot += Double(x) * Double(y)
        na += Double(x) * Double(x)
        nb += Double(y) * Double(y)
    }
    return dot / max((na * nb).squareRoot(), 1e-30)
}

final class EmbeddingTests: XCTestCase {
    static let tinyFolder = EmbeddingFixture.directory.appendingPathComponent("tiny-bert")

    /// Tokens, then embeddings against sentence-transformers with the stated cosine floor, each text alone.
    func checkParity(_ embedder: SentenceEmbedder, _ fixture: EmbeddingFixture, minimumCosine: Double, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(embedder.dimensions, fixture.dimensions, file: file, line: line)
        XCTAssertEqual(embedder.maxSequenceLength, fixture.max_seq_length, file: file, line: line)
        var worst = 1.0
        for c in fixture.cases {
            XCTAssertEqual(embedder.input(c.text).tokens, c.ids, "tokens of \(c.text.debugDescription)", file: file, line: line)
            let vector = try XCTUnwrap(try embedder.embed([c.text]).first)
            let similarity = cosine(vector, c.embedding)
            worst = min(worst, similarity)
            XCTAssertGreaterThanOrEqual(similarity, minimumCosine, "cosine of \(c.text.debugDescription)", file: file, line: line)
        }
        print("worst cosine \(worst) over \(fixture.cases.count) texts")
    }

    /// A batch of every text (mixed lengths, the truncated one included) gives what each text gives alone.
    func checkBatch(_ embedder: SentenceEmbedder, _ texts: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let batch = try embedder.embed(texts)
        XCTAssertEqual(batch.count, texts.count, file: file, line: line)
        for (text, vector) in zip(texts, batch) {
            let alone = try XCTUnwrap(try embedder.embed([text]).first)
            XCTAssertGreaterThanOrEqual(cosine(vector, alone), 0.999999, "batched \(text.debugDescription)", file: file, line: line)
            let largest = zip(vector, alone).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(largest, 1e-5, "batched \(text.debugDescription)", file: file, line: line)
        }
    }

    func testTinyBertMatchesSentenceTransformersInF32() throws {
        let fixture = try EmbeddingFixture.load("tiny-bert")
        let embedder = try EmbedderLoader.loadPipeline(Self.tinyFolder, precision: .f32, threads: 2)
        XCTAssertTrue(embedder.normalizes)
        XCTAssertEqual(embedder.pooling, .mean)
        try checkParity(embedder, fixture, minimumCosine: 0.99999)
        XCTAssertTrue(fixture.cases.contains { embedder.input($0.text).truncated }, "a fixture text is longer than max_seq_length")
    }

    func testTinyBertBatchOfMixedLengthsEqualsOneAtATime() throws {
        let fixture = try EmbeddingFixture.load("tiny-bert")
        let embedder = try EmbedderLoader.loadPipeline(Self.tinyFolder, precision: .f32, threads: 2)
        try checkBatch(embedder, fixture.cases.map(\.text))
    }

    func testLoadThroughTheProtocol() throws {
        let embedder = try EmbedderLoader.load(Self.tinyFolder)
        XCTAssertEqual(embedder.dimensions, 64)
        XCTAssertTrue(embedder.identifier.hasPrefix("tiny-bert@"))
        XCTAssertEqual(try embedder.tokenCount(of: "a man"), 2)
        XCTAssertEqual(try embedder.embed([]).count, 0)
        let vectors = try embedder.embed(["a man", "is eating"])
        XCTAssertEqual(vectors.map(\.count), [64, 64])
        for v in vectors { XCTAssertEqual(v.reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-5) }
    }

    func testMiniLMMatchesSentenceTransformersInF32() throws {
        guard let path = defaultEmbedderPath() else { throw XCTSkip("default embedder not installed (scripts/test installs it)") }
        let fixture = try EmbeddingFixture.load("minilm")
        try checkParity(try EmbedderLoader.loadPipeline(path, precision: .f32, threads: 2), fixture, minimumCosine: 0.99999)
    }

    func testMiniLMFastPath() throws {
        guard let path = defaultEmbedderPath() else { throw XCTSkip("default embedder not installed (scripts/test installs it)") }
        let fixture = try EmbeddingFixture.load("minilm")
        let embedder = try EmbedderLoader.loadPipeline(path, threads: 2)
        try checkParity(embedder, fixture, minimumCosine: 0.9999)
        try checkBatch(embedder, fixture.cases.map(\.text))
    }

    func testMiniLMWordPieceTokens() throws {
        guard let path = defaultEmbedderPath() else { throw XCTSkip("default embedder not installed (scripts/test installs it)") }
        let fixture = try EmbeddingFixture.load("minilm")
        let text = try ModelLoader.loadText(path.path)
        for c in fixture.tokenizer_cases ?? [] {
            XCTAssertEqual(text.tokenizer.encode(c.text), c.ids, "tokens of \(c.text.debugDescription)")
            XCTAssertEqual(text.tokenizer.decode(c.ids, skipSpecialTokens: true), c.decoded, "decoded \(c.text.debugDescription)")
        }
    }

    func testPoolingModes() {
        let states: [Float] = [1, -2, 3, 4, 0, -6]  // two tokens of width 3
        XCTAssertEqual(Pooling.mean.pool(states, rows: 2, width: 3), [2.5, -1, -1.5])
        XCTAssertEqual(Pooling.cls.pool(states, rows: 2, width: 3), [1, -2, 3])
        XCTAssertEqual(Pooling.max.pool(states, rows: 2, width: 3), [4, 0, 3])
        let root2 = Float(2).squareRoot()
        XCTAssertEqual(Pooling.meanSqrtLength.pool(states, rows: 2, width: 3), [5 / root2, -2 / root2, -3 / root2])
    }

    func testBadFoldersAreClearErrors() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-embed-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try FileManager.default.copyItem(at: Self.tinyFolder, to: scratch)
        try Data(#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},{"idx":1,"name":"1","path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#.utf8)
            .write(to: scratch.appendingPathComponent("modules.json"))
        XCTAssertThrowsError(try EmbedderLoader.load(scratch)) { XCTAssertTrue("\($0)".contains("Dense"), "\($0)") }
        XCTAssertThrowsError(try EmbedderLoader.load(scratch.appendingPathComponent("missing"))) { XCTAssertTrue("\($0)".contains("no embedding model"), "\($0)") }
        // A decoder is not an embedder, and an encoder is not a language model.
        let llama = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/models/tiny-llama")
        XCTAssertThrowsError(try EmbedderLoader.load(llama)) { XCTAssertTrue("\($0)".contains("not a text encoder"), "\($0)") }
        XCTAssertThrowsError(try ModelLoader.load(Self.tinyFolder.path)) { XCTAssertTrue("\($0)".contains("anelm embed"), "\($0)") }
    }

    func testInfoDescribesTheEncoder() throws {
        let info = try ModelInfo(path: Self.tinyFolder.path)
        let rows = Dictionary(info.rows.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(rows["architecture"]?.hasPrefix("BertModel (BERT"), true)
        XCTAssertEqual(rows["hidden size"], "64")
        XCTAssertEqual(rows["tokenizer"], "255 tokens")
        XCTAssertEqual(rows["Neural Engine"], "lowers to Core ML (anelm export-coreml)")
    }
}
