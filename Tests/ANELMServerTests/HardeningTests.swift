import ANELM
import ANELMServer
import Foundation
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// What hostile or careless clients can do (issue #21): leaked sockets, slow clients, broken
/// bodies, races that refuse a request the server could take, and the smaller protocol points.
final class HardeningTests: XCTestCase {
    override class func setUp() {
        super.setUp()
        signal(SIGPIPE, SIG_IGN)
    }

    /// Waits until `condition` holds (checked every 20 ms) or fails after `timeout` seconds.
    private func eventually(_ what: String, timeout: Double = 10, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            Thread.sleep(forTimeInterval: 0.02)
        }
        XCTFail("timed out waiting for: \(what)")
    }

    /// Sockets this process holds open (the in-process server's and the test's own).
    private func openSockets() throws -> Int {
        #if os(Linux)
            let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")
            return fds.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)"))?.hasPrefix("socket:") ?? false }.count
        #else
            throw XCTSkip("counts sockets through /proc")
        #endif
    }

    private func json(_ object: [String: Any]) -> [UInt8] {
        Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data())
    }

    // MARK: - Sockets and slow clients

    /// Requests refused before their body is read (413 for a large body, 400 for a huge URL) with
    /// `Connection: close`: once the client has read the answer and closed, the server holds no socket.
    func testEarlyRejectionsLeaveNoSocketOpen() throws {
        let s = try TestServer(configuration: ServerConfiguration(parallel: 1, queueLimit: 1))
        defer { s.stop() }
        let baseline = try openSockets()
        let body = [UInt8](repeating: UInt8(ascii: "a"), count: 10_000_000)
        for _ in 0..<10 {
            let c = try TestConnection(port: s.port)
            try c.send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n")
            _ = c.sendUntilBlocked(body)
            c.setReadTimeout(10)
            let answer = String(decoding: c.readToEnd(), as: UTF8.self)
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 413"), String(answer.prefix(200)))
            c.hangUp()
        }
        for _ in 0..<3 {
            let c = try TestConnection(port: s.port)
            try c.send("GET /\(String(repeating: "x", count: 200_000)) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            c.setReadTimeout(10)
            let answer = String(decoding: c.readToEnd(), as: UTF8.self)
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 400"), String(answer.prefix(200)))
            c.hangUp()
        }
        try eventually("the server to close the rejected connections", timeout: 10) { try openSockets() <= baseline }
        XCTAssertEqual(try openSockets(), baseline)
        XCTAssertEqual(try TestHTTP.request(port: s.port, "GET", "/health").status, 200, "still serving")
    }

    /// With one slot and no queue, a client sending one request at a time is never refused: the slot
    /// is free before the last byte of the previous answer goes out.
    func testSequentialRequestsNeverGetQueueFull() throws {
        let s = try TestServer(configuration: ServerConfiguration(parallel: 1, queueLimit: 0))
        defer { s.stop() }
        // Busy threads make the scheduler thread lose its CPU at any moment, as on a loaded machine.
        let spinning = SpinFlag()
        for _ in 0..<3 { Thread.detachNewThread { while spinning.on {} } }
        defer { spinning.on = false }
        var refused = 0
        var ok = 0
        for i in 0..<500 {
            let stream = i % 4 == 3
            let r = try TestHTTP.post(port: s.port, "/v1/completions", json: ["prompt": "Hi", "max_tokens": 2, "temperature": 0, "stream": stream])
            if r.status == 503 { refused += 1 } else if r.status == 200 { ok += 1 }
        }
        XCTAssertEqual(refused, 0)
        XCTAssertEqual(ok, 500)
    }

    // MARK: - Client mistakes

    /// A broken chunked body, a truncated one, or a client that stops before its Content-Length
    /// are the client's mistakes: 400 (or a close), never a 500.
    func testBrokenBodiesAreClientErrors() throws {
        let s = try TestServer(configuration: ServerConfiguration(parallel: 1, queueLimit: 1))
        defer { s.stop() }
        let head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"

        let badSize = try TestConnection(port: s.port)
        try badSize.send(head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{\"prompt\": \"Hi\"}\r\n0\r\n\r\n")
        badSize.setReadTimeout(10)
        let badSizeAnswer = String(decoding: badSize.readToEnd(), as: UTF8.self)
        XCTAssertTrue(badSizeAnswer.hasPrefix("HTTP/1.1 400"), badSizeAnswer)

        let truncated = try TestConnection(port: s.port)
        try truncated.send(head + "Transfer-Encoding: chunked\r\n\r\n10\r\n{\"prompt\": ")
        truncated.closeWrite()
        truncated.setReadTimeout(10)
        let truncatedAnswer = String(decoding: truncated.readToEnd(), as: UTF8.self)
        XCTAssertTrue(truncatedAnswer.isEmpty || truncatedAnswer.hasPrefix("HTTP/1.1 400"), truncatedAnswer)

        let short = try TestConnection(port: s.port)
        try short.send(head + "Content-Length: 100\r\n\r\n{\"prompt\": ")
        short.closeWrite()
        short.setReadTimeout(10)
        let shortAnswer = String(decoding: short.readToEnd(), as: UTF8.self)
        XCTAssertTrue(shortAnswer.isEmpty || shortAnswer.hasPrefix("HTTP/1.1 400"), shortAnswer)

        XCTAssertEqual(try s.metric("anelm_requests_total", labels: "{endpoint=\"/v1/completions\",status=\"500\"}"), 0)
        XCTAssertEqual(try TestHTTP.post(port: s.port, "/v1/completions", json: ["prompt": "Hi", "max_tokens": 2]).status, 200)
    }

    // MARK: - Shutdown

    /// A stream the server cuts short on shutdown says so: `finish_reason` is "abort", not "stop".
    func testShutdownTruncationIsNotStop() throws {
        var configuration = ServerConfiguration(parallel: 1, queueLimit: 1)
        configuration.tokenDelay = 0.02
        configuration.shutdownGracePeriod = 0.2
        let s = try TestServer(configuration: configuration)
        let c = try TestConnection(port: s.port)
        try c.sendRequest(
            method: "POST", path: "/v1/chat/completions", headers: ["Content-Type": "application/json"],
            body: json(["messages": [["role": "user", "content": "Hi"]], "max_tokens": 400, "temperature": 0, "stream": true]))
        XCTAssertEqual(try c.readHead().status, 200)
        _ = try c.readChunk()
        s.stop()
        var rest = [UInt8]()
        while let chunk = try c.readChunk() { rest += chunk }
        let text = String(decoding: rest, as: UTF8.self)
        XCTAssertTrue(text.contains("\"finish_reason\":\"abort\""), text)
        XCTAssertFalse(text.contains("\"finish_reason\":\"stop\""), text)
        XCTAssertTrue(text.hasSuffix("data: [DONE]\n\n"), text)
    }

    /// A non-streaming request still waiting for a slot when the server shuts down gets 503
    /// `shutting_down` with `Retry-After`, not a 500.
    func testRequestQueuedAtShutdownGets503() throws {
        var configuration = ServerConfiguration(parallel: 1, queueLimit: 1)
        configuration.tokenDelay = 0.02
        configuration.shutdownGracePeriod = 0.3
        let s = try TestServer(configuration: configuration)
        let running = try TestConnection(port: s.port)
        try running.sendRequest(
            method: "POST", path: "/v1/completions", headers: ["Content-Type": "application/json"],
            body: json(["prompt": "Once upon a time", "max_tokens": 400, "stream": true]))
        XCTAssertEqual(try running.readHead().status, 200)
        let waiting = try TestConnection(port: s.port)
        try waiting.sendRequest(
            method: "POST", path: "/v1/completions", headers: ["Content-Type": "application/json"],
            body: json(["prompt": "Hi", "max_tokens": 3]))
        try eventually("one queued request") { try s.metric("anelm_queue_depth") == 1 }
        s.stop()
        let head = try waiting.readHead()
        let body = String(decoding: try waiting.readBody(headers: head.headers), as: UTF8.self)
        XCTAssertEqual(head.status, 503, body)
        XCTAssertTrue(body.contains("\"code\":\"shutting_down\""), body)
        XCTAssertNotNil(head.headers["retry-after"])
        running.hangUp()  // only now: the running stream must hold the slot until the shutdown
    }

    // MARK: - Protocol details

    func testAuthSchemeAndHeaders() throws {
        var configuration = ServerConfiguration(parallel: 1, queueLimit: 2)
        configuration.apiKey = "sekrit"
        let s = try TestServer(configuration: configuration)
        defer { s.stop() }
        let body: [String: Any] = ["prompt": "Hi", "max_tokens": 2]
        for scheme in ["Bearer", "bearer", "BEARER"] {
            XCTAssertEqual(try TestHTTP.post(port: s.port, "/v1/completions", json: body, headers: ["Authorization": "\(scheme) sekrit"]).status, 200, scheme)
        }
        let refused = try TestHTTP.post(port: s.port, "/v1/completions", json: body, headers: ["Authorization": "Bearer sekrit2"])
        XCTAssertEqual(refused.status, 401)
        XCTAssertEqual(refused.headers["www-authenticate"], "Bearer")
        XCTAssertEqual(try TestHTTP.post(port: s.port, "/v1/completions", json: body, headers: ["Authorization": "Basic sekrit"]).status, 401)
        XCTAssertEqual(try TestHTTP.post(port: s.port, "/v1/completions", json: body, headers: ["Authorization": "Bearer sekri"]).status, 401)

        // HEAD answers like GET, without the body (and without the key, like GET /health).
        let c = try TestConnection(port: s.port)
        try c.sendRequest(method: "HEAD", path: "/health")
        let head = try c.readHead()
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.headers["content-type"], "application/json")
        c.setReadTimeout(10)
        XCTAssertEqual(c.readToEnd(), [])
    }

    func testEvery503CarriesRetryAfter() throws {
        var configuration = ServerConfiguration(parallel: 1, queueLimit: 0)
        configuration.tokenDelay = 0.01
        let s = try TestServer(configuration: configuration)
        defer { s.stop() }
        let running = try TestConnection(port: s.port)
        try running.sendRequest(
            method: "POST", path: "/v1/completions", headers: ["Content-Type": "application/json"],
            body: json(["prompt": "Once upon a time", "max_tokens": 400, "stream": true]))
        XCTAssertEqual(try running.readHead().status, 200)
        let busy = try TestHTTP.post(port: s.port, "/v1/completions", json: ["prompt": "Hi", "max_tokens": 2])
        XCTAssertEqual(busy.status, 503)
        XCTAssertEqual(busy.errorCode, "queue_full")
        XCTAssertNotNil(busy.headers["retry-after"].flatMap { Int($0) }, "\(busy.headers)")
        running.hangUp()  // only now: the running stream must hold the slot until the busy answer
    }

    func testMetricsReportResidentMemory() throws {
        let s = try TestServer(configuration: ServerConfiguration(parallel: 1, queueLimit: 1))
        defer { s.stop() }
        let resident = try s.metric("process_resident_memory_bytes")
        #if os(Linux)
            // The same process: /proc/self/status' VmRSS, give or take what moved meanwhile.
            let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
            let line = try XCTUnwrap(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
            let kilobytes = try XCTUnwrap(Double(line.split(separator: " ").dropFirst().first ?? ""))
            XCTAssertEqual(resident / 1024, kilobytes, accuracy: kilobytes * 0.2)
        #endif
        XCTAssertGreaterThan(resident, 10_000_000)
    }

    // MARK: - Timeouts and the connection cap

    private func timeoutServer(header: Double = 0.5, body: Double = 0.5, idle: Double = 0.5, maxConnections: Int = 256) throws -> TestServer {
        var configuration = ServerConfiguration(parallel: 1, queueLimit: 1)
        configuration.timeouts = ConnectionTimeouts(header: header, body: body, idle: idle, linger: 0.5)
        configuration.maxConnections = maxConnections
        return try TestServer(configuration: configuration)
    }

    /// Silent connections, half a header, half a body and idle kept-alive connections are closed
    /// after their timeout; a well-behaved keep-alive client is served on the same connection.
    func testStalledConnectionsAreClosed() throws {
        let s = try timeoutServer()
        defer { s.stop() }
        let baseline = try openSockets()

        let silent = try TestConnection(port: s.port)
        let halfHeader = try TestConnection(port: s.port)
        try halfHeader.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        let halfBody = try TestConnection(port: s.port)
        try halfBody.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\": ")
        let idle = try TestConnection(port: s.port)
        for _ in 0..<2 {  // two requests on one connection, then silence
            try idle.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            let head = try idle.readHead()
            XCTAssertEqual(head.status, 200)
            XCTAssertEqual(String(decoding: try idle.readBody(headers: head.headers), as: UTF8.self), "{\"status\":\"ok\"}")
            Thread.sleep(forTimeInterval: 0.2)  // shorter than the idle timeout
        }
        let started = Date()
        for (name, c) in [("silent", silent), ("half a header", halfHeader), ("half a body", halfBody), ("idle", idle)] {
            XCTAssertTrue(c.closedByServer(within: 5), "\(name) still open")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 4)
        for c in [silent, halfHeader, halfBody, idle] { c.hangUp() }
        try eventually("the server's sockets to close") { try openSockets() <= baseline }
        XCTAssertEqual(try s.metric("anelm_requests_total", labels: "{endpoint=\"/v1/completions\",status=\"500\"}"), 0)
    }

    /// Beyond `maxConnections`, a new connection waits (it is not answered) until one closes.
    func testConnectionCap() throws {
        let s = try timeoutServer(header: 30, body: 30, idle: 30, maxConnections: 2)
        defer { s.stop() }
        let first = try TestConnection(port: s.port)
        let second = try TestConnection(port: s.port)
        Thread.sleep(forTimeInterval: 0.3)
        let third = try TestConnection(port: s.port)
        try third.send("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertFalse(third.closedByServer(within: 1), "answered beyond the cap")
        XCTAssertTrue(third.bufferedText.isEmpty, third.bufferedText)
        first.hangUp()
        third.setReadTimeout(10)
        XCTAssertTrue(third.readToEnd().starts(with: Array("HTTP/1.1 200".utf8)))
        second.hangUp()
    }

    // MARK: - API key file

    func testAPIKeyFromFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-key-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        func write(_ name: String, _ text: String) throws -> String {
            let url = folder.appendingPathComponent(name)
            try Data(text.utf8).write(to: url)
            return url.path
        }
        XCTAssertEqual(try ServerConfiguration.apiKey(fromFile: write("key", "s3cret\n")), "s3cret")
        XCTAssertEqual(try ServerConfiguration.apiKey(fromFile: write("crlf", "s3cret\r\n")), "s3cret")
        XCTAssertEqual(try ServerConfiguration.apiKey(fromFile: write("bare", "s3cret")), "s3cret")
        func refusal(_ path: String) -> String {
            do {
                _ = try ServerConfiguration.apiKey(fromFile: path)
                return "accepted"
            } catch let e as ANELMError { return e.message } catch { return "\(error)" }
        }
        XCTAssertTrue(refusal(try write("empty", "\n")).contains("is empty"))
        XCTAssertTrue(refusal(folder.appendingPathComponent("missing").path).contains("cannot read the API key file"))
        XCTAssertTrue(refusal(try write("two", "a\nb\n")).contains("one word"))
    }
}

private final class SpinFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = true
    var on: Bool {
        get {
            lock.lock()
            defer { lock.unlock() }
            return value
        }
        set {
            lock.lock()
            value = newValue
            lock.unlock()
        }
    }
}
