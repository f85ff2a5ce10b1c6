import ANELM
import ANELMServer
import Foundation
import XCTest

/// Slots, queueing, disconnects and shutdown. The tiny model is slowed down (`tokenDelay`) so
/// that generations last long enough to observe them.
final class SchedulingTests: XCTestCase {
    override class func setUp() {
        super.setUp()
        signal(SIGPIPE, SIG_IGN)
    }

    private func slowServer(parallel: Int, queue: Int, delay: Double = 0.01, grace: Double = 10) throws -> TestServer {
        var configuration = ServerConfiguration(parallel: parallel, queueLimit: queue)
        configuration.tokenDelay = delay
        configuration.shutdownGracePeriod = grace
        return try TestServer(configuration: configuration)
    }

    private func longRequest(_ maxTokens: Int = 400) -> [UInt8] {
        let body: [String: Any] = ["prompt": "Once upon a time", "max_tokens": maxTokens, "temperature": 0, "stream": true]
        return Array((try? JSONSerialization.data(withJSONObject: body)) ?? Data())
    }

    /// Opens a streaming request and reads its head and first event.
    private func openStream(_ s: TestServer, body: [UInt8]) throws -> TestConnection {
        let c = try TestConnection(port: s.port)
        try c.sendRequest(method: "POST", path: "/v1/completions", headers: ["Content-Type": "application/json"], body: body)
        let head = try c.readHead()
        XCTAssertEqual(head.status, 200)
        _ = try c.readChunk()
        return c
    }

    /// Waits until `condition` holds (checked every 20 ms) or fails after `timeout` seconds.
    private func eventually(_ what: String, timeout: Double = 20, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            Thread.sleep(forTimeInterval: 0.02)
        }
        XCTFail("timed out waiting for: \(what)")
    }

    func testDisconnectCancelsGenerationAndFreesSlot() throws {
        let s = try slowServer(parallel: 1, queue: 1)
        defer { s.stop() }
        let stream = try openStream(s, body: longRequest())
        XCTAssertEqual(try s.metric("anelm_active_slots"), 1)
        stream.hangUp()  // mid-generation
        try eventually("the slot to be freed") { try s.metric("anelm_active_slots") == 0 }
        XCTAssertEqual(try s.metric("anelm_generations_cancelled_total"), 1)
        XCTAssertLessThan(try s.metric("anelm_completion_tokens_total"), 400, "generation stopped early")
        // The only slot serves the next request.
        let next = try TestHTTP.post(port: s.port, "/v1/completions", json: ["prompt": "Hi", "max_tokens": 3, "temperature": 0])
        XCTAssertEqual(next.status, 200)
    }

    /// A non-streaming client that hangs up is noticed too (the server writes leading spaces while it
    /// generates): its generation is cancelled and the slot freed.
    func testNonStreamingDisconnectCancelsGeneration() throws {
        let s = try slowServer(parallel: 1, queue: 1)
        defer { s.stop() }
        let c = try TestConnection(port: s.port)
        let body = Array(
            (try? JSONSerialization.data(withJSONObject: ["prompt": "Once upon a time", "max_tokens": 400, "temperature": 0] as [String: Any])) ?? Data())
        try c.sendRequest(method: "POST", path: "/v1/completions", headers: ["Content-Type": "application/json"], body: body)
        try eventually("one active slot") { try s.metric("anelm_active_slots") == 1 }
        c.hangUp()
        try eventually("the slot to be freed") { try s.metric("anelm_active_slots") == 0 }
        XCTAssertEqual(try s.metric("anelm_generations_cancelled_total"), 1)
        XCTAssertLessThan(try s.metric("anelm_completion_tokens_total"), 400, "generation stopped early")
    }

    func testQueueFullGets503() throws {
        let s = try slowServer(parallel: 1, queue: 1)
        defer { s.stop() }
        let running = try openStream(s, body: longRequest())
        try eventually("one active slot") { try s.metric("anelm_active_slots") == 1 }
        // The second waits in the queue (its stream is open but gets no tokens yet).
        let waiting = try TestConnection(port: s.port)
        try waiting.sendRequest(method: "POST", path: "/v1/completions", headers: ["Content-Type": "application/json"], body: longRequest(3))
        try eventually("one queued request") { try s.metric("anelm_queue_depth") == 1 }
        let refused = try TestHTTP.post(port: s.port, "/v1/completions", json: ["prompt": "Hi", "max_tokens": 3])
        XCTAssertEqual(refused.status, 503)
        XCTAssertEqual(refused.errorCode, "queue_full")
        XCTAssertEqual(try s.metric("anelm_requests_total", labels: "{endpoint=\"/v1/completions\",status=\"503\"}"), 1)
        // Hanging up the running one lets the queued one through.
        running.hangUp()
        let head = try waiting.readHead()
        XCTAssertEqual(head.status, 200)
        let body = String(decoding: try waiting.readBody(headers: head.headers), as: UTF8.self)
        XCTAssertTrue(body.hasSuffix("data: [DONE]\n\n"), body)
        try eventually("idle") { try s.metric("anelm_active_slots") == 0 && s.metric("anelm_queue_depth") == 0 }
        XCTAssertEqual(try s.metric("anelm_generations_cancelled_total"), 1)
    }

    func testSlotsInterleaveFairly() throws {
        let s = try slowServer(parallel: 2, queue: 2, delay: 0.01)
        defer { s.stop() }
        // Two streams at once: each gets tokens while the other is still running.
        let a = try openStream(s, body: longRequest(100))
        let b = try openStream(s, body: longRequest(100))
        XCTAssertEqual(try s.metric("anelm_active_slots"), 2)
        var aChunks = 0
        var bChunks = 0
        for _ in 0..<10 {
            if try a.readChunk() != nil { aChunks += 1 }
            if try b.readChunk() != nil { bChunks += 1 }
        }
        XCTAssertEqual(aChunks, 10)
        XCTAssertEqual(bChunks, 10)
        XCTAssertEqual(try s.metric("anelm_active_slots"), 2, "both still generating")
        while try a.readChunk() != nil {}
        while try b.readChunk() != nil {}
        XCTAssertEqual(try s.metric("anelm_completion_tokens_total"), 200)
    }

    func testGracefulShutdownEndsStreamsCleanly() throws {
        let s = try slowServer(parallel: 1, queue: 1, delay: 0.02, grace: 0.3)
        let stream = try openStream(s, body: longRequest())
        let started = Date()
        s.stop()  // waits for run() to return
        XCTAssertLessThan(Date().timeIntervalSince(started), 8, "the grace period ends the generation")
        var rest = [UInt8]()
        while let chunk = try stream.readChunk() { rest += chunk }
        let text = String(decoding: rest, as: UTF8.self)
        XCTAssertTrue(text.contains("\"finish_reason\":\"abort\""), text)  // cut short by the shutdown
        XCTAssertTrue(text.hasSuffix("data: [DONE]\n\n"), text)
        XCTAssertThrowsError(try TestHTTP.request(port: s.port, "GET", "/health"), "no longer listening")
    }

    /// The default model (SmolLM2-135M-Instruct, Q4_1) when it is installed.
    func testDefaultModelChat() throws {
        let path = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/anelm/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("default model not installed at \(path)") }
        let s = try TestServer(modelPath: path, configuration: ServerConfiguration(parallel: 1, queueLimit: 2), threads: 2)
        defer { s.stop() }
        let models = try TestHTTP.request(port: s.port, "GET", "/v1/models")
        XCTAssertEqual((models.json["data"] as? [[String: Any]])?.first?["id"] as? String, "SmolLM2-135M-Instruct.Q4_1")
        let messages: [[String: Any]] = [["role": "user", "content": "What is the capital of France?"]]
        let body: [String: Any] = ["model": "SmolLM2-135M-Instruct.Q4_1.gguf", "messages": messages, "max_tokens": 12, "temperature": 0]
        let r = try TestHTTP.post(port: s.port, "/v1/chat/completions", json: body)
        XCTAssertEqual(r.status, 200, r.text)
        let content = try XCTUnwrap(((r.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String)
        let local = try s.model.makeSession().generate(
            prompt: s.model.chatPromptTokens([ChatMessage(role: "user", content: "What is the capital of France?")]),
            parameters: GenerationParameters(maxTokens: 12, sampling: SamplingParameters(temperature: 0)))
        XCTAssertEqual(content, local.text)
        XCTAssertFalse(content.isEmpty)
        var streamed = body
        streamed["stream"] = true
        let text = try TestHTTP.post(port: s.port, "/v1/chat/completions", json: streamed).events.dropLast().compactMap { event -> String? in
            let chunk = try? JSONSerialization.jsonObject(with: Data(event.utf8)) as? [String: Any]
            return ((chunk?["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])?["content"] as? String
        }.joined()
        XCTAssertEqual(text, content)
    }
}
