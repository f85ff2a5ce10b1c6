import ANELM
import ANELMContext
import ANELMServer
import Foundation
import XCTest

/// Words hashed into buckets, L2-normalized: a deterministic stand-in for the embedding model, enough to exercise
/// the server's grounded chat and feedback plumbing (retrieval quality is tested in ANELMContextTests).
final class WordHashEmbedder: TextEmbedder {
    let dimensions = 64
    let maxSequenceLength = 256
    let identifier = "test-word-hash-64"
    func words(_ text: String) -> [Substring] { text.lowercased().split { !$0.isLetter && !$0.isNumber } }
    func tokenCount(of text: String) throws -> Int { words(text).count }
    func embed(_ texts: [String]) throws -> [[Float]] {
        texts.map { text in
            var v = [Float](repeating: 0, count: dimensions)
            for w in words(text) { v[Int(w.utf8.reduce(UInt64(5381)) { ($0 &* 33) &+ UInt64($1) } % UInt64(dimensions))] += 1 }
            let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return n > 0 ? v.map { $0 / n } : v
        }
    }
}

final class ContextServerTests: XCTestCase {
    nonisolated(unsafe) static var shared: (server: TestServer, engine: ContextEngine, folder: URL)?

    override class func setUp() {
        super.setUp()
        signal(SIGPIPE, SIG_IGN)
    }

    override class func tearDown() {
        shared?.server.stop()
        if let folder = shared?.folder { try? FileManager.default.removeItem(at: folder) }
        shared = nil
        super.tearDown()
    }

    func served() throws -> (server: TestServer, engine: ContextEngine) {
        if let s = Self.shared { return (s.server, s.engine) }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-context-server-\(UUID().uuidString)")
        let docs = folder.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        try Data("Green tea steeps for two minutes in water below boiling.".utf8).write(to: docs.appendingPathComponent("tea.txt"))
        try Data("A bicycle chain wants oil every few hundred kilometres.".utf8).write(to: docs.appendingPathComponent("bike.txt"))
        try Data("Glaciers carve U-shaped valleys over thousands of years.".utf8).write(to: docs.appendingPathComponent("ice.txt"))
        let store = try ContextStore(path: folder.appendingPathComponent("store.sqlite").path)
        let embedder = WordHashEmbedder()
        _ = try Indexer(store: store, embedder: embedder, embedderPath: "test", chunker: try Chunker()).index([docs.path])
        let engine = try ContextEngine(store: store, embedder: embedder, threads: 1)
        let server = try TestServer(configuration: ServerConfiguration(parallel: 1, queueLimit: 4), context: engine)
        Self.shared = (server, engine, folder)
        return (server, engine)
    }


    func testFeedbackIsRecordedAndBadFeedbackRefused() throws {
        let (server, engine) = try served()
        // An answer logged as a grounded chat would log it.
        let prompt = try engine.groundedPrompt(question: "How long does green tea steep?", topK: 2, budget: 10_000) { _ in 0 }
        let answerID = Int(try engine.record(prompt, response: "Two minutes [1].", model: "test").answerID)
        let chunks = prompt.sources.map { Int($0.id) }
        XCTAssertEqual(chunks.count, 2)
        let ok = try TestHTTP.post(port: server.port, "/v1/feedback", json: ["answer_id": answerID, "chunks": [["id": chunks[1], "useful": false]]])
        XCTAssertEqual(ok.status, 200, ok.text)
        XCTAssertEqual(ok.json["recorded"] as? Int, 1)
        XCTAssertEqual(try engine.store.loggedAnswer(Int64(answerID)).sources[1].feedback, false)
        let unknown = try TestHTTP.post(port: server.port, "/v1/feedback", json: ["answer_id": 99_999, "chunks": [["id": chunks[0], "useful": true]]])
        XCTAssertEqual(unknown.status, 404, unknown.text)
        let stranger = try TestHTTP.post(port: server.port, "/v1/feedback", json: ["answer_id": answerID, "chunks": [["id": -3, "useful": true]]])
        XCTAssertEqual(stranger.status, 400, stranger.text)
        for bad: [String: Any] in [
            ["answer_id": "one", "chunks": [["id": 1, "useful": true]]], ["answer_id": answerID, "chunks": []],
            ["answer_id": answerID, "chunks": [["id": 1, "useful": "yes"]]], ["answer_id": answerID, "chunks": [["id": 1, "useful": true]], "rating": 5],
        ] {
            XCTAssertEqual(try TestHTTP.post(port: server.port, "/v1/feedback", json: bad).status, 400, "\(bad)")
        }
    }

    func testAServerWithoutAStoreRefusesFeedback() throws {
        let plain = try TestServer(configuration: ServerConfiguration(parallel: 1, queueLimit: 2))
        defer { plain.stop() }
        let reply = try TestHTTP.post(port: plain.port, "/v1/feedback", json: ["answer_id": 1, "chunks": [["id": 1, "useful": true]]])
        XCTAssertEqual(reply.status, 400, reply.text)
        XCTAssertEqual((reply.json["error"] as? [String: Any])?["code"] as? String, "no_context_store")
    }

    func ask(_ port: Int, _ extra: [String: Any] = [:]) throws -> TestResponse {
        var body: [String: Any] = [
            "messages": [["role": "user", "content": "How long does green tea steep?"]], "max_tokens": 6, "temperature": 0,
            "context": ["top_k": 2, "store": "store.sqlite"],
        ]
        for (k, v) in extra { body[k] = v }
        return try TestHTTP.post(port: port, "/v1/chat/completions", json: body)
    }

    func testGroundedChatReturnsItsChunksAndLogsTheAnswer() throws {
        let (server, engine) = try served()
        let reply = try ask(server.port)
        XCTAssertEqual(reply.status, 200, reply.text)
        let context = try XCTUnwrap(reply.json["context"] as? [String: Any], reply.text)
        let chunks = try XCTUnwrap(context["chunks"] as? [Int])
        XCTAssertEqual(chunks.count, 2)
        let first = try XCTUnwrap(try engine.store.chunks([Int64(chunks[0])]).first)
        XCTAssertTrue(first.source.hasSuffix("tea.txt"), first.source)
        let answerID = try XCTUnwrap(context["answer_id"] as? Int)
        let logged = try engine.store.loggedAnswer(Int64(answerID))
        XCTAssertEqual(logged.query, "How long does green tea steep?")
        XCTAssertEqual(logged.sources.map(\.chunkID), chunks.map(Int64.init))
        XCTAssertNotNil(context["used_chunks"] as? [Int])
        XCTAssertTrue(context["relevance_version"] is NSNull)
        let message = (reply.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any]
        XCTAssertEqual(logged.response, message?["content"] as? String)
    }

    func testAStreamedGroundedAnswerEndsWithItsContext() throws {
        let (server, engine) = try served()
        let whole = try ask(server.port)
        let reply = try ask(server.port, ["stream": true])
        XCTAssertEqual(reply.status, 200, reply.text)
        XCTAssertEqual(reply.events.last, "[DONE]")
        let chunks = reply.events.dropLast().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let text = chunks.compactMap { (($0["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])?["content"] as? String }.joined()
        // The same tokens as the answer in one piece (greedy), then one chunk without choices carrying the context.
        let wholeText = ((whole.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String
        XCTAssertEqual(text, wholeText)
        XCTAssertEqual(chunks.filter { $0["context"] != nil }.count, 1)
        let last = try XCTUnwrap(chunks.last)
        XCTAssertEqual((last["choices"] as? [Any])?.count, 0)
        let context = try XCTUnwrap(last["context"] as? [String: Any], reply.text)
        XCTAssertEqual(context["chunks"] as? [Int], (whole.json["context"] as? [String: Any])?["chunks"] as? [Int])
        XCTAssertEqual((context["passages"] as? [[String: Any]])?.map { $0["citation"] as? Int }, [1, 2])
        let answerID = try XCTUnwrap(context["answer_id"] as? Int)
        XCTAssertEqual(try engine.store.loggedAnswer(Int64(answerID)).response, text, "the streamed answer is logged whole")
    }

    func testContextFieldsThatCannotBeHonouredAreRefused() throws {
        let (server, _) = try served()
        for (extra, param) in [
            (["context": ["top_k": 0]], "context.top_k"), (["context": ["top_k": 2, "store": "other.sqlite"]], "context.store"),
            (["context": ["top_k": 2, "filters": []]], "context.filters"), (["context": "yes"], "context"),
        ] as [([String: Any], String)] {
            let reply = try ask(server.port, extra)
            XCTAssertEqual(reply.status, 400, "\(extra): \(reply.text)")
            XCTAssertEqual((reply.json["error"] as? [String: Any])?["param"] as? String, param, reply.text)
        }
        let completion = try TestHTTP.post(port: server.port, "/v1/completions", json: ["prompt": "tea", "max_tokens": 2, "context": ["top_k": 1]])
        XCTAssertEqual(completion.status, 400, completion.text)
    }

    func testAServerWithoutAStoreRefusesContext() throws {
        let plain = try TestServer(configuration: ServerConfiguration(parallel: 1, queueLimit: 2))
        defer { plain.stop() }
        let reply = try ask(plain.port)
        XCTAssertEqual(reply.status, 400, reply.text)
        XCTAssertEqual((reply.json["error"] as? [String: Any])?["code"] as? String, "no_context_store")
    }
}
