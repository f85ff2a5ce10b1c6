import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A new file written front to back with `write(2)`, so that a failure (a full disk, a file-size limit) is an
/// error naming its cause rather than Foundation's generic one.
final class OutputFile {
    let path: String
    private var descriptor: Int32

    init(creating path: String) throws {
        self.path = path
        descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw ANELMError("cannot create \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { if descriptor >= 0 { _ = Foundation.close(descriptor) } }

    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Foundation.write(descriptor, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw ANELMError("writing \(path) failed: \(String(cString: strerror(errno)))") }
                offset += n
            }
        }
    }

    /// Flushes to disk and closes: a deferred write error surfaces here, not after the output was moved into place.
    func close() throws {
        let d = descriptor
        descriptor = -1
        guard fsync(d) == 0 else {
            let reason = String(cString: strerror(errno))
            _ = Foundation.close(d)
            throw ANELMError("writing \(path) failed: \(reason)")
        }
        guard Foundation.close(d) == 0 else { throw ANELMError("writing \(path) failed: \(String(cString: strerror(errno)))") }
    }
}
