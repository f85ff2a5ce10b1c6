import ANELM
import ANELMServer
import Foundation
import XCTest

/// `POST /v1/embeddings` with the tiny BERT fixture served next to the tiny chat model.
final class EmbeddingsEndpointTests: XCTestCase {
    nonisolated(unsafe) static var shared: TestServer?
    nonisolated(unsafe) static var embedder: SentenceEmbedder?

    static let tinyBert = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/embeddings/tiny-bert")

    override class func setUp() {
        super.setUp()
        signal(SIGPIPE, SIG_IGN)
    }

    override class func tearDown() {
        shared?.stop()
        shared = nil
        super.tearDown()
    }

    func server() throws -> (TestServer, SentenceEmbedder) {
        if let s = Self.shared, let e = Self.embedder { return (s, e) }
        let embedder = try EmbedderLoader.loadPipeline(Self.tinyBert, threads: 1)
        let s = try TestServer(configuration: ServerConfiguration(parallel: 1, queueLimit: 4), embedder: ServedEmbedder(embedder, name: "tiny-bert"))
        Self.shared = s
        Self.embedder = embedder
        return (s, embedder)
    }

    private func embed(_ body: [String: Any]) throws -> TestResponse {
        try TestHTTP.post(port: try server().0.port, "/v1/embeddings", json: body)
    }

    private func vectors(_ response: TestResponse, file: StaticString = #filePath, line: UInt = #line) throws -> [[Float]] {
        XCTAssertEqual(response.status, 200, response.text, file: file, line: line)
        let data = try XCTUnwrap(response.json["data"] as? [[String: Any]], file: file, line: line)
        for (i, item) in data.enumerated() {
            XCTAssertEqual(item["object"] as? String, "embedding", file: file, line: line)
            XCTAssertEqual(item["index"] as? Int, i, file: file, line: line)
        }
        return try data.map { try XCTUnwrap($0["embedding"] as? [Double], file: file, line: line).map(Float.init) }
    }

    private func assertClose(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max() ?? 1, 1e-6, file: file, line: line)
    }

    func testStringInputMatchesTheLibraryAndReportsUsage() throws {
        let (_, embedder) = try server()
        let response = try embed(["input": "a man is eating food.", "model": "tiny-bert"])
        let got = try vectors(response)
        XCTAssertEqual(got.count, 1)
        assertClose(got[0], try embedder.embed(["a man is eating food."])[0])
        XCTAssertEqual(response.json["object"] as? String, "list")
        XCTAssertEqual(response.json["model"] as? String, "tiny-bert")
        let usage = try XCTUnwrap(response.json["usage"] as? [String: Any])
        let tokens = embedder.input("a man is eating food.").tokens.count
        XCTAssertEqual(usage["prompt_tokens"] as? Int, tokens)
        XCTAssertEqual(usage["total_tokens"] as? Int, tokens)
    }

    func testArrayInputKeepsOrder() throws {
        let (_, embedder) = try server()
        let texts = ["the girl is carrying a baby.", "hello, world!", "東京は日本の首都です。"]
        let got = try vectors(try embed(["input": texts]))
        let expected = try embedder.embed(texts)
        XCTAssertEqual(got.count, 3)
        for (a, b) in zip(got, expected) { assertClose(a, b) }
    }

    func testTokenArraysAreTheModelsIds() throws {
        let (_, embedder) = try server()
        let ids = embedder.tokenizer.encode("a man is eating food.", addSpecialTokens: false)
        let single = try vectors(try embed(["input": ids]))
        XCTAssertEqual(single.count, 1)
        assertClose(single[0], try embedder.embed(["a man is eating food."])[0])
        let several = try vectors(try embed(["input": [ids, Array(ids.prefix(2))]]))
        XCTAssertEqual(several.count, 2)
        assertClose(several[0], single[0])
        XCTAssertEqual(try embed(["input": [1, 2, 100_000]]).status, 400)
        XCTAssertEqual(try embed(["input": [[Int]]()]).status, 400)
    }

    func testBase64IsLittleEndianFloat32() throws {
        let (_, embedder) = try server()
        let response = try embed(["input": "hello", "encoding_format": "base64"])
        XCTAssertEqual(response.status, 200, response.text)
        let item = try XCTUnwrap((response.json["data"] as? [[String: Any]])?.first)
        let bytes = try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(item["embedding"] as? String)))
        XCTAssertEqual(bytes.count, embedder.dimensions * 4)
        let decoded = (0..<embedder.dimensions).map { i in
            Float(bitPattern: UInt32(littleEndian: bytes.subdata(in: (i * 4)..<(i * 4 + 4)).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }))
        }
        XCTAssertEqual(decoded, try embedder.embed(["hello"])[0])
        XCTAssertEqual(try embed(["input": "hello", "encoding_format": "int8"]).status, 400)
    }

    func testDimensionsOnlyTheModelsOwn() throws {
        let (_, embedder) = try server()
        XCTAssertEqual(try embed(["input": "hello", "dimensions": embedder.dimensions]).status, 200)
        let refused = try embed(["input": "hello", "dimensions": 32])
        XCTAssertEqual(refused.status, 400)
        XCTAssertEqual((refused.json["error"] as? [String: Any])?["param"] as? String, "dimensions")
    }

    func testBadInputsAreClear400s() throws {
        for body: [String: Any] in [["input": ""], ["input": [String]()], ["input": ["fine", ""]], [:], ["input": 3], ["input": ["a", 3]], ["input": [["a"]]]] {
            let response = try embed(body)
            XCTAssertEqual(response.status, 400, "\(body): \(response.text)")
            XCTAssertEqual((response.json["error"] as? [String: Any])?["param"] as? String, "input", "\(body)")
        }
        XCTAssertEqual(try embed(["input": "hello", "model": "other"]).status, 404)
    }

    func testTruncationIsSaid() throws {
        let (_, embedder) = try server()
        let long = Array(repeating: "the cat sat on the mat.", count: 20).joined(separator: " ")
        let response = try embed(["input": [long, "short"]])
        XCTAssertEqual(response.status, 200, response.text)
        let data = try XCTUnwrap(response.json["data"] as? [[String: Any]])
        XCTAssertEqual(data[0]["truncated"] as? Bool, true)
        XCTAssertEqual(data[0]["input_tokens"] as? Int, embedder.input(long).originalTokenCount)
        XCTAssertNil(data[1]["truncated"])
        let usage = try XCTUnwrap(response.json["usage"] as? [String: Any])
        XCTAssertEqual(usage["prompt_tokens"] as? Int, embedder.maxSequenceLength + embedder.input("short").tokens.count)
    }

    func testModelsListsBoth() throws {
        let (s, _) = try server()
        let models = try TestHTTP.request(port: s.port, "GET", "/v1/models")
        let ids = (models.json["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
        XCTAssertEqual(ids, ["tiny-llama", "tiny-bert"])
    }
}
