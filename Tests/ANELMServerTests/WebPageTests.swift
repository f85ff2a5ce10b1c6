import ANELM
import ANELMContext
import ANELMServer
import ANELMTestSupport
import Foundation
import XCTest

/// The two documents of the test stores.
private func writeSmallDocuments(to folder: URL) throws {
    try Data("Green tea steeps for two minutes in water below boiling.".utf8).write(to: folder.appendingPathComponent("tea.txt"))
    try Data("A bicycle chain wants oil every few hundred kilometres.".utf8).write(to: folder.appendingPathComponent("bike.txt"))
}

/// A server with a small store (the word-hash embedder of ContextServerTests) and the tiny fixture model.
private func servedWithStore(_ test: XCTestCase, apiKey: String? = nil) throws -> (server: TestServer, engine: ContextEngine) {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-web-\(UUID().uuidString)")
    let docs = folder.appendingPathComponent("docs")
    try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
    try writeSmallDocuments(to: docs)
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

/// The page in a real browser, as a user runs it: the built `anelm index` makes a store (with the default embedder),
/// the built `anelm serve` serves it on loopback, and scripts/browser-test drives headless Chromium against it.
final class WebPageBrowserTests: XCTestCase {
    static var chromium: String? {
        if let named = ProcessInfo.processInfo.environment["ANELM_CHROMIUM"], !named.isEmpty { return named }
        return ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    func testThePageInHeadlessChromium() throws {
        guard let chromium = Self.chromium else {
            throw XCTSkip("chromium is not installed (apt-get install chromium; .ci/run installs it), so the page was not tested in a browser")
        }
        guard let anelm = builtANELMBinary() else {
            throw XCTSkip(
                "the anelm binary is not built (swift build -c release --product anelm; scripts/test builds it), so the page was not tested in a browser")
        }
        guard defaultEmbedderPath() != nil else {
            throw XCTSkip("the default embedder all-MiniLM-L6-v2 is not installed (scripts/test installs it with `anelm embed --text warmup`), "
                + "so `anelm index` could not make the store and the page was not tested in a browser")
        }
        signal(SIGPIPE, SIG_IGN)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-browser-\(UUID().uuidString)")
        let docs = folder.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try writeSmallDocuments(to: docs)
        let store = folder.appendingPathComponent("store.sqlite").path

        let index = try Child(anelm, ["index", "--store", store, docs.path])
        defer { index.killIfRunning() }
        let indexed = index.wait(seconds: 120)
        guard indexed == 0 else { return XCTFail("anelm index \(indexed.map { "exited \($0)" } ?? "took more than 120 s"):\n\(index.output)") }

        let server = try Child(
            anelm,
            ["serve", "--model", TestServer.fixtureModelPath, "--store", store, "--api-key", "browser-key", "--port", "0", "--parallel", "1"])
        defer { server.killIfRunning() }
        guard let port = server.waitUntilHealthy(seconds: 60) else {
            return XCTFail("anelm serve did not answer GET /health within 60 s\(server.isRunning ? "" : " (it exited)"); its output:\n\(server.output)")
        }

        let started = Date()
        let browser = try Child(
            URL(fileURLWithPath: "/usr/bin/env"),
            [
                "python3", repositoryRoot.appendingPathComponent("scripts/browser-test").path, "--url", "http://127.0.0.1:\(port)", "--api-key",
                "browser-key", "--chromium", chromium, "--screenshots", repositoryRoot.appendingPathComponent(".build/web-screenshots").path,
            ])
        defer { browser.killIfRunning() }
        let browsed = browser.wait(seconds: 170)
        if browsed == nil {
            // Ctrl-C lets the script close its Chromium (SIGKILL would leave it running).
            kill(browser.process.processIdentifier, SIGINT)
            _ = browser.wait(seconds: 15)
        }
        print(browser.output)
        print("the browser test took \(Int(Date().timeIntervalSince(started))) s")
        XCTAssertEqual(browsed, 0, browsed == nil ? "the browser test took more than 170 s:\n\(browser.output)" : browser.output)

        // A graceful stop, as a service manager asks for it.
        kill(server.process.processIdentifier, SIGTERM)
        let stopped = server.wait(seconds: 60)
        XCTAssertEqual(stopped, 0, "anelm serve after SIGTERM \(stopped.map { "exited \($0)" } ?? "still ran after 60 s"); its output:\n\(server.output)")
    }
}

/// A child process whose output (stdout and stderr together) is collected as it comes.
private final class Child: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var collected = Data()
    private let exited = DispatchSemaphore(value: 0)
    private let drained = DispatchSemaphore(value: 0)

    init(_ executable: URL, _ arguments: [String]) throws {
        process.executableURL = executable
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        let exited = self.exited
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        let reader = pipe.fileHandleForReading
        DispatchQueue.global().async { [self] in
            while true {
                let data = reader.availableData
                if data.isEmpty { break }
                lock.withLock { collected.append(data) }
            }
            drained.signal()
        }
    }

    var output: String { lock.withLock { String(decoding: collected, as: UTF8.self) } }
    var isRunning: Bool { process.isRunning }

    /// The exit status, or nil while it still runs after `seconds`.
    func wait(seconds: Double) -> Int32? {
        guard exited.wait(timeout: .now() + seconds) == .success else { return nil }
        exited.signal()
        // The rest of its output (a grandchild holding the pipe open must not hold this up).
        if drained.wait(timeout: .now() + 5) == .success { drained.signal() }
        return process.terminationStatus
    }

    /// The port `anelm serve --port 0` logged ("listening address=http://127.0.0.1:PORT") once GET /health answers 200 there,
    /// or nil when that does not happen within `seconds` (or the server exits).
    func waitUntilHealthy(seconds: Double) -> Int? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline && process.isRunning {
            if let port = listeningPort, (try? TestHTTP.request(port: port, "GET", "/health"))?.status == 200 { return port }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }

    private var listeningPort: Int? {
        let log = output
        guard let marker = log.range(of: "address=http://127.0.0.1:") else { return nil }
        return Int(log[marker.upperBound...].prefix { $0.isNumber })
    }

    /// Ends it (SIGKILL) if it still runs.
    func killIfRunning() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
