import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A whole file mapped read-only into memory. Tensors point into it; nothing is copied.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeRawBufferPointer

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ANELMError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw ANELMError("cannot stat \(path)") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw ANELMError("\(path) is not a regular file") }
        let size = Int(info.st_size)
        guard size > 0 else { throw ANELMError("\(path) is empty") }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw ANELMError("cannot map \(path) into memory: \(String(cString: strerror(errno)))")
        }
        bytes = UnsafeRawBufferPointer(start: base, count: size)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }
}

/// Bounds-checked little-endian reads from a byte range; every read past the end throws.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var offset: Int
    /// Names the file in error messages.
    let context: String

    init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0, context: String) {
        self.bytes = bytes
        self.offset = offset
        self.context = context
    }

    var remaining: Int { bytes.count - offset }

    mutating func skip(_ count: Int) throws {
        guard count >= 0, count <= remaining else { throw truncated(count) }
        offset += count
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        guard size <= remaining else { throw truncated(size) }
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += size
        return T(littleEndian: value)
    }

    mutating func readFloat() throws -> Float { Float(bitPattern: try read(UInt32.self)) }
    mutating func readDouble() throws -> Double { Double(bitPattern: try read(UInt64.self)) }

    /// A count or length stored as an unsigned 64-bit integer, checked against what is left to read.
    mutating func readCount(elementSize: Int, what: String) throws -> Int {
        let raw = try read(UInt64.self)
        guard raw <= UInt64(remaining / max(elementSize, 1)) else {
            throw ANELMError("\(context): \(what) \(raw) does not fit in the file (\(remaining) bytes left at offset \(offset))")
        }
        return Int(raw)
    }

    mutating func readBytes(_ count: Int) throws -> UnsafeRawBufferPointer {
        guard count >= 0, count <= remaining else { throw truncated(count) }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
    }

    private func truncated(_ wanted: Int) -> ANELMError {
        ANELMError("\(context): truncated at offset \(offset) (wanted \(wanted) more bytes, \(remaining) left)")
    }
}
