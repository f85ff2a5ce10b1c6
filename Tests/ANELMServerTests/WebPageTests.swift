import ANELM
import ANELMContext
import ANELMServer
import Foundation
import XCTest

/// A server with a small store (the word-hash embedder of ContextServerTests) and the tiny fixture model.
private func servedWithStore(_ test: XCTestCase, apiKey: String? = nil) throws -> (server: TestServer, engine: ContextEngine) {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-web-\(UUID().uuidString)")
    let docs = folder.appendingPathComponent("docs")
    try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
    try Data("Green tea steeps for two minutes in water below boiling.".utf8).write(to: docs.appendingPathComponent("tea.txt"))
    try Data("A bicycle chain wants oil every few hundred kilometres.".utf8).write(to: docs.appendingPathComponent("bike.txt"))
    let store = try ContextStore(path: folder.appendingPathComponent("store.sqlite").path)
    let embedder = WordHashEmbedder()
    _ = try Indexer(store: store, embedder: embedder, embedderPath: "test", chunker: try Chunker()).index([docs.path])
    let engine = try ContextEngine(store: store, embedder: embedder, threads: 1)
    var configuration = ServerConfiguration(parallel: 1, queueLimit: 4)
    configuration.apiKey = apiKey
    let server = try TestServer(configuration: configuration, context: engine)
    if let apiKey { server.authHeaders = ["Authorization": "Bearer \(apiKey)"] }
    test.addTeardownBlock {
        server.stop()
        try? FileManager.default.removeItem(at: folder)
    }
    return (server, engine)
}

final class WebPageTests: XCTestCase {
    override class func setUp() {
        super.setUp()
        signal(SIGPIPE, SIG_IGN)
    }

    func testPageFilesHaveTheirTypesAndAPolicyForbiddingInlineScript() throws {
        let server = try TestServer(configuration: ServerConfiguration(apiKey: "sesame", parallel: 1, queueLimit: 4))
        defer { server.stop() }
        // The page is open without the key (it asks for it); the API behind it is not.
        for (path, type, marker) in [
            ("/", "text/html; charset=utf-8", "<script src=\"/app.js\""), ("/app.js", "text/javascript; charset=utf-8", "renderMarkdown"),
            ("/app.css", "text/css; charset=utf-8", "@media (max-width"),
        ] {
            let response = try TestHTTP.request(port: server.port, "GET", path)
            XCTAssertEqual(response.status, 200, path)
            XCTAssertEqual(response.headers["content-type"], type, path)
            XCTAssertEqual(response.headers["cache-control"], "no-cache", path)
            XCTAssertEqual(response.headers["x-content-type-options"], "nosniff", path)
            let policy = try XCTUnwrap(response.headers["content-security-policy"], path)
            XCTAssertTrue(policy.contains("default-src 'none'") && policy.contains("script-src 'self';") && policy.contains("connect-src 'self'"), policy)
            XCTAssertFalse(policy.contains("unsafe-inline") || policy.contains("http"), policy)
            XCTAssertTrue(response.text.contains(marker), path)
        }
        let html = try TestHTTP.request(port: server.port, "GET", "/").text
        XCTAssertFalse(html.contains("<script>") || html.contains("style="), "inline script or style would be refused by the policy")
        XCTAssertFalse(try TestHTTP.request(port: server.port, "GET", "/app.js").text.contains("innerHTML"), "model text must never be parsed as HTML")
        XCTAssertEqual(try TestHTTP.request(port: server.port, "GET", "/v1/documents").status, 401)
        XCTAssertEqual(try TestHTTP.request(port: server.port, "GET", "/app.js.map").status, 401)
    }

    func testWithoutAStoreTheDocumentEndpointsSaySo() throws {
        let server = try TestServer(configuration: ServerConfiguration(parallel: 1, queueLimit: 4))
        defer { server.stop() }
        for (method, path) in [("GET", "/v1/documents"), ("GET", "/v1/context/status"), ("POST", "/v1/context/train"), ("DELETE", "/v1/documents?path=a")] {
            let response = try TestHTTP.request(port: server.port, method, path)
            XCTAssertEqual(response.status, 404, "\(method) \(path)")
            XCTAssertEqual(response.errorCode, "no_context_store", "\(method) \(path)")
        }
    }

    func testUploadListAndRemoveDocuments() throws {
        let (server, engine) = try servedWithStore(self, apiKey: "sesame")
        let auth = server.authHeaders
        XCTAssertEqual(try TestHTTP.post(port: server.port, "/v1/documents", json: ["name": "a.md", "content": "x"]).status, 401)
        let text = "# Harbour\n\nThe harbour gate code is pelican-42. Boats moor at pier seven."
        let uploaded = try TestHTTP.post(port: server.port, "/v1/documents", json: ["name": "notes/harbour.md", "content": text], headers: auth)
        XCTAssertEqual(uploaded.status, 200, uploaded.text)
        XCTAssertEqual(uploaded.json["name"] as? String, "notes/harbour.md")
        XCTAssertEqual(uploaded.json["chunks"] as? Int, 1)
        let path = try XCTUnwrap(uploaded.json["path"] as? String)
        XCTAssertTrue(path.hasSuffix(".uploads/notes/harbour.md"), path)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), text)
        // Indexed as anelm index indexes: searchable at once.
        let hits = try engine.hits(try engine.search("harbour gate code pelican"), topK: 1)
        XCTAssertEqual(hits.first?.chunk.source, path)
        XCTAssertTrue(hits.first?.chunk.text.contains("pelican-42") ?? false)
        // The same content again changes nothing; new content replaces the document.
        let again = try TestHTTP.post(port: server.port, "/v1/documents", json: ["name": "notes/harbour.md", "content": text], headers: auth)
        XCTAssertEqual(again.json["unchanged"] as? Bool, true, again.text)
        let replaced = try TestHTTP.post(
            port: server.port, "/v1/documents", json: ["name": "notes/harbour.md", "content": "Pier nine now."], headers: auth)
        XCTAssertEqual(replaced.json["indexed"] as? Bool, true, replaced.text)
        XCTAssertEqual(try engine.store.documents().filter { $0.path == path }.count, 1)

        let listed = try TestHTTP.request(port: server.port, "GET", "/v1/documents", headers: auth)
        XCTAssertEqual(listed.status, 200)
        let data = try XCTUnwrap(listed.json["data"] as? [[String: Any]])
        XCTAssertEqual(data.count, 3)
        let entry = try XCTUnwrap(data.first { $0["path"] as? String == path })
        XCTAssertEqual(entry["name"] as? String, "notes/harbour.md")
        XCTAssertEqual(entry["uploaded"] as? Bool, true)
        XCTAssertEqual(entry["chunks"] as? Int, 1)
        XCTAssertEqual(entry["bytes"] as? Int, 14)
        XCTAssertEqual(data.filter { $0["uploaded"] as? Bool == false }.count, 2)

        let query = path.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? path
        let removed = try TestHTTP.request(port: server.port, "DELETE", "/v1/documents?path=\(query)", headers: auth)
        XCTAssertEqual(removed.status, 200, removed.text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        XCTAssertEqual(try engine.store.counts().documents, 2)
        XCTAssertNotEqual(try engine.hits(try engine.search("harbour pier nine"), topK: 3).first?.chunk.source, path)
        let gone = try TestHTTP.request(port: server.port, "DELETE", "/v1/documents?path=\(query)", headers: auth)
        XCTAssertEqual(gone.status, 404)
        XCTAssertEqual(gone.errorCode, "document_not_found")
        // A document indexed from the command line is removed from the store, its file left alone.
        let tea = try XCTUnwrap(try engine.store.documents().first { $0.path.hasSuffix("tea.txt") }).path
        XCTAssertEqual(try TestHTTP.request(port: server.port, "DELETE", "/v1/documents?path=\(tea)", headers: auth).status, 200)
        XCTAssertTrue(FileManager.default.fileExists(atPath: tea))
    }

    func testBadDocumentsAreRefusedNamingTheField() throws {
        let (server, engine) = try servedWithStore(self)
        let cases: [([String: Any], String)] = [
            (["content": "x"], "name"), (["name": 3, "content": "x"], "name"), (["name": "a.md"], "content"),
            (["name": "a.md", "content": ["x"]], "content"), (["name": "../escape.md", "content": "x"], "name"), (["name": "/etc/x", "content": "x"], "name"),
            (["name": "a/.hidden", "content": "x"], "name"), (["name": "", "content": "x"], "name"), (["name": "a\u{1}b", "content": "x"], "name"),
            (["name": "a.md", "content": "nul\u{0}inside"], "content"), (["name": "a.md", "content": "x", "tags": []], "tags"),
            (["name": String(repeating: "a/", count: 40) + "x", "content": "x"], "name"),
        ]
        for (body, field) in cases {
            let response = try TestHTTP.post(port: server.port, "/v1/documents", json: body)
            XCTAssertEqual(response.status, 400, "\(body): \(response.text)")
            XCTAssertEqual((response.json["error"] as? [String: Any])?["param"] as? String, field, "\(body)")
        }
        // Names that would pass through an uploaded file or replace a folder of uploads.
        XCTAssertEqual(try TestHTTP.post(port: server.port, "/v1/documents", json: ["name": "notes/a.md", "content": "x"]).status, 200)
        for name in ["notes", "notes/a.md/b.md"] {
            let response = try TestHTTP.post(port: server.port, "/v1/documents", json: ["name": name, "content": "y"])
            XCTAssertEqual(response.status, 400, "\(name): \(response.text)")
            XCTAssertEqual((response.json["error"] as? [String: Any])?["param"] as? String, "name", name)
        }
        let notJSON = try TestHTTP.request(port: server.port, "POST", "/v1/documents", body: Array("name=a".utf8))
        XCTAssertEqual(notJSON.status, 400)
        XCTAssertEqual(notJSON.errorCode, "invalid_json")
        let noPath = try TestHTTP.request(port: server.port, "DELETE", "/v1/documents")
        XCTAssertEqual(noPath.status, 400)
        XCTAssertEqual((noPath.json["error"] as? [String: Any])?["param"] as? String, "path")
        XCTAssertEqual(try engine.store.counts().documents, 3, "nothing refused was stored (two indexed before, notes/a.md)")
        XCTAssertEqual(try TestHTTP.request(port: server.port, "GET", "/health").status, 200, "the server is still up")
    }

    func testStatusAndTrainingAsTheCommandsDoThem() throws {
        let (server, engine) = try servedWithStore(self)
        var status = try TestHTTP.request(port: server.port, "GET", "/v1/context/status")
        XCTAssertEqual(status.status, 200, status.text)
        XCTAssertEqual(status.json["documents"] as? Int, 2)
        XCTAssertEqual(status.json["chunks"] as? Int, 2)
        XCTAssertEqual(status.json["answers"] as? Int, 0)
        XCTAssertEqual(status.json["feedback"] as? Int, 0)
        XCTAssertTrue(status.json["relevance_version"] is NSNull)
        XCTAssertEqual((status.json["embedder"] as? [String: Any])?["identifier"] as? String, "test-word-hash-64")
        // Too few answers with feedback: refused, saying why.
        let early = try TestHTTP.request(port: server.port, "POST", "/v1/context/train")
        XCTAssertEqual(early.status, 409, early.text)
        XCTAssertEqual(early.errorCode, "training_refused")
        XCTAssertTrue((early.json["error"] as? [String: Any])?["message"] as? String ?? "" ~= "training needs at least", early.text)
        // A log to learn from: the tea chunk is what each tea question wanted.
        for i in 0..<24 {
            let question = i % 2 == 0 ? "How long does green tea steep? \(i)" : "tea water boiling \(i)"
            let prompt = try engine.groundedPrompt(question: question, topK: 2, budget: 10_000) { _ in 0 }
            let answer = try engine.record(prompt, response: "Two minutes [1].", model: "test").answerID
            for chunk in prompt.sources { try engine.store.recordFeedback(answerID: answer, chunkID: chunk.id, useful: chunk.source.hasSuffix("tea.txt")) }
        }
        status = try TestHTTP.request(port: server.port, "GET", "/v1/context/status")
        XCTAssertEqual(status.json["answers"] as? Int, 24)
        XCTAssertEqual(status.json["feedback"] as? Int, 48)
        let trained = try TestHTTP.post(port: server.port, "/v1/context/train", json: ["seed": 3, "epochs": 20])
        XCTAssertEqual(trained.status, 200, trained.text)
        XCTAssertEqual(trained.json["version"] as? Int, 1)
        XCTAssertEqual(trained.json["compared_with"] as? String, "retrieval")
        XCTAssertGreaterThan(trained.json["held_out_answers"] as? Int ?? 0, 0)
        XCTAssertNotNil((trained.json["after"] as? [String: Any])?["ndcg@5"] as? Double)
        status = try TestHTTP.request(port: server.port, "GET", "/v1/context/status")
        let versions = try XCTUnwrap(status.json["versions"] as? [[String: Any]])
        XCTAssertEqual(versions.count, 1)
        XCTAssertEqual(versions.first?["accepted"] as? Bool, trained.json["accepted"] as? Bool)
        XCTAssertEqual(status.json["relevance_version"] as? Int, (trained.json["accepted"] as? Bool == true) ? 1 : nil)
        let refused: [([String: Any], String)] = [(["epochs": 0], "epochs"), (["hidden": "8"], "hidden"), (["seed": -1], "seed"), (["rate": 1], "rate")]
        for (body, field) in refused {
            let response = try TestHTTP.post(port: server.port, "/v1/context/train", json: body)
            XCTAssertEqual(response.status, 400, "\(body)")
            XCTAssertEqual((response.json["error"] as? [String: Any])?["param"] as? String, field, "\(body)")
        }
    }

    func testGroundedRepliesCarryTheirPassages() throws {
        let (server, _) = try servedWithStore(self)
        let response = try TestHTTP.post(
            port: server.port, "/v1/chat/completions",
            json: ["messages": [["role": "user", "content": "How long does green tea steep?"]], "max_tokens": 4, "context": ["top_k": 2]])
        XCTAssertEqual(response.status, 200, response.text)
        let context = try XCTUnwrap(response.json["context"] as? [String: Any])
        let passages = try XCTUnwrap(context["passages"] as? [[String: Any]])
        XCTAssertEqual(passages.map { $0["citation"] as? Int }, [1, 2])
        XCTAssertEqual(passages.map { $0["id"] as? Int }, (context["chunks"] as? [Int])?.map { $0 })
        XCTAssertTrue(passages[0]["source"] as? String ?? "" ~= "tea.txt")
        XCTAssertTrue(passages[0]["text"] as? String ?? "" ~= "Green tea steeps")
    }
}

private func ~= (text: String, part: String) -> Bool { text.contains(part) }

/// The page in a real browser: headless Chromium driven by scripts/browser-test against this server.
final class WebPageBrowserTests: XCTestCase {
    static var chromium: String? {
        if let named = ProcessInfo.processInfo.environment["ANELM_CHROMIUM"], !named.isEmpty { return named }
        return ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    func testThePageInHeadlessChromium() throws {
        guard let chromium = Self.chromium else {
            throw XCTSkip("chromium is not installed (apt-get install chromium; .ci/run installs it), so the page was not tested in a browser")
        }
        signal(SIGPIPE, SIG_IGN)
        let (server, _) = try servedWithStore(self, apiKey: "browser-key")
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", root.appendingPathComponent("scripts/browser-test").path, "--url", "http://127.0.0.1:\(server.port)", "--api-key", "browser-key",
            "--chromium", chromium,
            "--screenshots", root.appendingPathComponent(".build/web-screenshots").path,
        ]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let finished = DispatchSemaphore(value: 0)
        let collected = OutputBox()
        DispatchQueue.global().async {
            collected.data = output.fileHandleForReading.readDataToEndOfFile()
            finished.signal()
        }
        if finished.wait(timeout: .now() + 170) == .timedOut {
            process.terminate()
            XCTFail("the browser test took more than 170 s")
            return
        }
        process.waitUntilExit()
        let log = String(decoding: collected.data, as: UTF8.self)
        print(log)
        XCTAssertEqual(process.terminationStatus, 0, log)
    }
}

private final class OutputBox: @unchecked Sendable {
    var data = Data()
}
