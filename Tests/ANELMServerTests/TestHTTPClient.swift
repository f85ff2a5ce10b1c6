import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A blocking HTTP/1.1 client over a loopback socket: enough to send exact bytes, read
/// streamed bodies as they come, and hang up mid-stream.
final class TestConnection {
    private var fd: Int32
    private var buffer = [UInt8]()

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestHTTPError("socket() failed") }
        var timeout = timeval(tv_sec: 120, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw TestHTTPError("connect() to port \(port) failed")
        }
    }

    deinit { hangUp() }

    /// Closes the socket (a client going away).
    func hangUp() {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw TestHTTPError("write failed") }
            offset += n
        }
    }

    func sendRequest(method: String, path: String, headers: [String: String] = [:], body: [UInt8]? = nil) throws {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        try send(Array(head.utf8) + (body ?? []))
    }

    /// Reads more bytes into the buffer; false at end of stream.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 16384)
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { throw TestHTTPError("read failed or timed out") }
        buffer += chunk[0..<n]
        return n > 0
    }

    private func readLine() throws -> String {
        while true {
            if let i = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[0..<i], as: UTF8.self)
                buffer.removeSubrange(0...i)
                return line.hasSuffix("\r") ? String(line.dropLast()) : line
            }
            guard try fill() else { throw TestHTTPError("connection closed mid-line") }
        }
    }

    private func readExactly(_ count: Int) throws -> [UInt8] {
        while buffer.count < count { guard try fill() else { throw TestHTTPError("connection closed early") } }
        let out = Array(buffer[0..<count])
        buffer.removeSubrange(0..<count)
        return out
    }

    /// Status and headers (names lowercased).
    func readHead() throws -> (status: Int, headers: [String: String]) {
        let statusLine = try readLine()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw TestHTTPError("bad status line: \(statusLine)") }
        var headers: [String: String] = [:]
        while true {
            let line = try readLine()
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, headers)
    }

    /// The next piece of a chunked body; nil after the last.
    func readChunk() throws -> [UInt8]? {
        let sizeLine = try readLine()
        guard let size = Int(sizeLine.split(separator: ";").first ?? "", radix: 16) else { throw TestHTTPError("bad chunk size \(sizeLine)") }
        if size == 0 {
            while try !readLine().isEmpty {}
            return nil
        }
        let data = try readExactly(size)
        _ = try readLine()
        return data
    }

    /// Writes `bytes` until they are all sent or the server stops reading for `stall` seconds;
    /// returns how many were sent.
    func sendUntilBlocked(_ bytes: [UInt8], stall: Double = 0.5) -> Int {
        var timeout = timeval(tv_sec: Int(stall), tv_usec: suseconds_t((stall - Double(Int(stall))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, min($0.count, 65536)) }
            if n <= 0 { break }
            offset += n
        }
        return offset
    }

    /// Ends the sending half (the server reads end of stream); reading still works.
    func closeWrite() { shutdown(fd, Int32(SHUT_WR)) }

    func setReadTimeout(_ seconds: Double) {
        var timeout = timeval(tv_sec: Int(seconds), tv_usec: suseconds_t((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Everything until the server closes (a reset counts as the end); what was buffered first.
    func readToEnd() -> [UInt8] {
        while (try? fill()) == true {}
        defer { buffer.removeAll() }
        return buffer
    }

    /// Whether the server closed the connection within `seconds` (end of stream or reset), as
    /// opposed to the read timing out with the connection still open. Bytes read are kept.
    func closedByServer(within seconds: Double) -> Bool {
        setReadTimeout(seconds)
        while true {
            var chunk = [UInt8](repeating: 0, count: 16384)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                buffer += chunk[0..<n]
                continue
            }
            if n == 0 { return true }
            return errno != EAGAIN && errno != EWOULDBLOCK
        }
    }

    /// What has been read but not consumed, as text.
    var bufferedText: String { String(decoding: buffer, as: UTF8.self) }

    func readBody(headers: [String: String]) throws -> [UInt8] {
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            var body = [UInt8]()
            while let chunk = try readChunk() { body += chunk }
            return body
        }
        if let length = headers["content-length"].flatMap({ Int($0) }) { return try readExactly(length) }
        while try fill() {}
        defer { buffer.removeAll() }
        return buffer
    }
}

struct TestHTTPError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct TestResponse {
    let status: Int
    let headers: [String: String]
    let body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:] }
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }

    /// The `data:` payloads of a server-sent-event body.
    var events: [String] {
        text.components(separatedBy: "\n\n").compactMap { block in
            block.hasPrefix("data: ") ? String(block.dropFirst(6)) : nil
        }
    }
}

enum TestHTTP {
    static func request(port: Int, _ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8]? = nil) throws -> TestResponse {
        let connection = try TestConnection(port: port)
        try connection.sendRequest(method: method, path: path, headers: headers, body: body)
        let head = try connection.readHead()
        return TestResponse(status: head.status, headers: head.headers, body: try connection.readBody(headers: head.headers))
    }

    static func post(port: Int, _ path: String, json: [String: Any], headers: [String: String] = [:]) throws -> TestResponse {
        let data = try JSONSerialization.data(withJSONObject: json)
        return try request(port: port, "POST", path, headers: headers.merging(["Content-Type": "application/json"]) { a, _ in a }, body: Array(data))
    }
}
