import ANELM
import ANELMServer
import Foundation
import XCTest

/// `GET/POST /lora-adapters` and per-request adapters (`"lora": [{"id", "scale"}]`) on the tiny Llama with two adapters.
final class LoRAServerTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let adapters = [
        LoRAChoice(path: fixtures.appendingPathComponent("lora/tiny-llama-peft").path),
        LoRAChoice(path: fixtures.appendingPathComponent("lora/tiny-llama-second").path, scale: 0.5),
    ]
    let prompt = "The quick brown fox jumps over"

    override class func setUp() {
        super.setUp()
        signal(SIGPIPE, SIG_IGN)
    }

    func complete(_ port: Int, lora: [[String: Any]]?) throws -> TestResponse {
        var body: [String: Any] = ["prompt": prompt, "max_tokens": 8, "temperature": 0]
        if let lora { body["lora"] = lora }
        return try TestHTTP.post(port: port, "/v1/completions", json: body)
    }

    /// What a session on the same model and adapters generates with `scales`.
    func expected(_ scales: [Float]?) throws -> String {
        let loaded = try ModelLoader.load(TestServer.fixtureModelPath, options: LoadOptions(threads: 1, lora: Self.adapters))
        let result = try loaded.makeSession().generate(
            prompt: loaded.tokenizer.encode(prompt), parameters: GenerationParameters(maxTokens: 8, stopAtEndOfSequence: true, loraScales: scales))
        return result.text
    }

    func text(_ response: TestResponse) -> String? {
        ((response.json["choices"] as? [[String: Any]])?.first?["text"]) as? String
    }

    func testListSetAndPerRequestAdapters() throws {
        let server = try TestServer(configuration: ServerConfiguration(parallel: 2, queueLimit: 8), lora: Self.adapters)
        defer { server.stop() }
        let list = try TestHTTP.request(port: server.port, "GET", "/lora-adapters")
        XCTAssertEqual(list.status, 200)
        let entries = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(list.body)) as? [[String: Any]])
        XCTAssertEqual(entries.map { $0["id"] as? Int }, [0, 1])
        XCTAssertEqual(entries.map { $0["scale"] as? Double }, [1, 0.5])
        XCTAssertEqual(entries.first?["path"] as? String, Self.adapters[0].path)

        // Defaults, one adapter, none: each as a local session with those scales generates.
        let defaults = try complete(server.port, lora: nil)
        XCTAssertEqual(text(defaults), try expected(nil))
        let firstOnly = try complete(server.port, lora: [["id": 0, "scale": 1]])
        XCTAssertEqual(text(firstOnly), try expected([1, 0]))
        let none = try complete(server.port, lora: [])
        XCTAssertEqual(text(none), try expected([0, 0]))
        XCTAssertNotEqual(text(none), text(firstOnly))
        // The same prompt under other adapters reuses nothing; under the same, its cached prefix.
        let again = try complete(server.port, lora: [])
        let cached = ((again.json["usage"] as? [String: Any])?["prompt_tokens_details"] as? [String: Any])?["cached_tokens"] as? Int
        XCTAssertGreaterThan(cached ?? 0, 0)
        XCTAssertEqual(text(again), text(none))

        // Concurrent requests with different adapters share the slots and each gets its own.
        let results = ResultBox()
        let group = DispatchGroup()
        let choices: [[[String: Any]]] = [[["id": 0, "scale": 1]], [], [["id": 1, "scale": 2]], [["id": 0, "scale": 0.5], ["id": 1, "scale": 1]]]
        for (i, lora) in choices.enumerated() {
            group.enter()
            DispatchQueue.global().async {
                results.set(i, (try? self.complete(server.port, lora: lora)).flatMap(self.text))
                group.leave()
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 120), .success)
        XCTAssertEqual(results.get(0), try expected([1, 0]))
        XCTAssertEqual(results.get(1), try expected([0, 0]))
        XCTAssertEqual(results.get(2), try expected([0, 2]))
        XCTAssertEqual(results.get(3), try expected([0.5, 1]))

        // POST sets the defaults (an adapter left out gets 0, as llama-server does).
        let set = try TestHTTP.request(
            port: server.port, "POST", "/lora-adapters", headers: ["Content-Type": "application/json"], body: Array(#"[{"id": 1, "scale": 0.25}]"#.utf8))
        XCTAssertEqual(set.status, 200, set.text)
        let after = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try TestHTTP.request(port: server.port, "GET", "/lora-adapters").body)) as? [[String: Any]])
        XCTAssertEqual(after.map { $0["scale"] as? Double }, [0, 0.25])
        XCTAssertEqual(text(try complete(server.port, lora: nil)), try expected([0, 0.25]))

        // Bad lists: 400 naming the field.
        for body in [#"{"id": 0}"#, #"[{"id": 7, "scale": 1}]"#, #"[{"id": 0, "scale": "x"}]"#, #"[{"id": 0, "scale": 1}, {"id": 0, "scale": 2}]"#, "[{"] {
            let r = try TestHTTP.request(port: server.port, "POST", "/lora-adapters", headers: ["Content-Type": "application/json"], body: Array(body.utf8))
            XCTAssertEqual(r.status, 400, body)
        }
        let bad = try complete(server.port, lora: [["id": 5, "scale": 1]])
        XCTAssertEqual(bad.status, 400)
        XCTAssertEqual((bad.json["error"] as? [String: Any])?["param"] as? String, "lora")
    }

    func testServerWithoutAdapters() throws {
        let server = try TestServer(configuration: ServerConfiguration(parallel: 1, queueLimit: 2))
        defer { server.stop() }
        let list = try TestHTTP.request(port: server.port, "GET", "/lora-adapters")
        XCTAssertEqual(list.status, 200)
        XCTAssertEqual(list.text, "[]")
        XCTAssertEqual(try complete(server.port, lora: []).status, 200)
        let refused = try complete(server.port, lora: [["id": 0, "scale": 1]])
        XCTAssertEqual(refused.status, 400)
        XCTAssertEqual((refused.json["error"] as? [String: Any])?["param"] as? String, "lora")
    }
}

private final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int: String] = [:]
    func set(_ i: Int, _ value: String?) { lock.withLock { values[i] = value } }
    func get(_ i: Int) -> String? { lock.withLock { values[i] } }
}
