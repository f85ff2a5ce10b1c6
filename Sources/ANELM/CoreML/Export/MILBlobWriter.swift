import Foundation

/// Core ML's weight file, MILBlob storage version 2 (apple/coremltools mlmodel/src/MILBlob/Blob/
/// StorageFormat.hpp, StorageWriter.cpp): a 64-byte `storage_header` (blob count, version 2), then per
/// blob a 64-byte `blob_metadata` (sentinel 0xDEADBEEF, data type, size, data offset, padding bits) at a
/// 64-byte aligned offset, immediately followed by the data. A `BlobFileValue` names a blob by the
/// offset of its metadata. Gaps between blobs are zeros; the file ends where the last data ends.
public final class MILBlobWriter {
    /// MILBlob `BlobDataType` (BlobDataType.hpp).
    public enum DataType: UInt32, Sendable {
        case float16 = 1
        case float32 = 2
        case uint8 = 3
        case int8 = 4
        case uint4 = 11
        case uint6 = 13
        case int32 = 14

        public init(_ type: MILDataType) throws {
            switch type {
            case .float16: self = .float16
            case .float32: self = .float32
            case .uint8: self = .uint8
            case .int8: self = .int8
            case .uint4: self = .uint4
            case .uint6: self = .uint6
            case .int32: self = .int32
            case .bool, .string: throw ANELMError("MIL \(type) values cannot go to weight.bin")
            }
        }
    }

    public static let alignment = 64
    public static let headerSize = 64
    public static let metadataSize = 64
    public static let sentinel: UInt32 = 0xDEAD_BEEF

    public let path: String
    private let handle: FileHandle
    public private(set) var count = 0
    /// Bytes written so far: where the next blob's metadata goes, once aligned.
    public private(set) var size = UInt64(headerSize)

    public init(path: String) throws {
        self.path = path
        guard FileManager.default.createFile(atPath: path, contents: Data(Self.header(count: 0))),
            let handle = FileHandle(forWritingAtPath: path)
        else {
            throw ANELMError("cannot create \(path)")
        }
        self.handle = handle
        try handle.seekToEnd()
    }

    static func header(count: UInt32) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: headerSize)
        put(count, at: 0, in: &h)  // storage_header.count
        put(UInt32(2), at: 4, in: &h)  // storage_header.version
        return h
    }

    /// Appends one blob of `elements` values of `type` (sub-byte types packed as `packSubByte` does);
    /// returns the offset of its metadata, which `BlobFileValue.offset` holds.
    public func append(_ milType: MILDataType, _ data: [UInt8], elements: Int) throws -> UInt64 {
        let type = try DataType(milType)
        let metadataOffset = Self.aligned(size)
        let bits = milType.bits
        guard data.count == (elements * bits + 7) / 8 else {
            throw ANELMError("blob of \(elements) \(type) values has \(data.count) bytes")
        }
        var metadata = [UInt8](repeating: 0, count: Self.metadataSize)
        Self.put(Self.sentinel, at: 0, in: &metadata)  // sentinel
        Self.put(type.rawValue, at: 4, in: &metadata)  // mil_dtype
        Self.put(UInt64(data.count), at: 8, in: &metadata)  // sizeInBytes
        Self.put(metadataOffset + UInt64(Self.metadataSize), at: 16, in: &metadata)  // offset of the data
        Self.put(UInt64((8 - elements * bits % 8) % 8), at: 24, in: &metadata)  // padding_size_in_bits; reserved_1…4 stay 0
        try handle.write(contentsOf: Data(count: Int(metadataOffset - size)) + Data(metadata))
        // Large blobs go out in slices, so no second full copy of the data is made.
        var start = 0
        while start < data.count {
            let end = min(data.count, start + (8 << 20))
            try handle.write(contentsOf: data[start..<end].withUnsafeBytes { Data($0) })
            start = end
        }
        size = metadataOffset + UInt64(Self.metadataSize + data.count)
        count += 1
        return metadataOffset
    }

    /// Writes the final blob count into the header and closes the file.
    public func finish() throws {
        try handle.seek(toOffset: 0)
        try handle.write(contentsOf: Data(Self.header(count: UInt32(count))))
        try handle.close()
    }

    static func aligned(_ offset: UInt64) -> UInt64 {
        let a = UInt64(alignment)
        return (offset + a - 1) / a * a
    }

    static func put<T: FixedWidthInteger>(_ value: T, at offset: Int, in bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
    }
}

/// Packs `bits`-wide unsigned values as MILBlob stores sub-byte types (SubByteTypes.cpp): a little-endian
/// bit stream, element i in bits [i·bits, (i+1)·bits), so a uint4 byte holds element 2k in its low nibble.
public func packSubByte(_ values: [UInt8], bits: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: (values.count * bits + 7) / 8)
    for (i, v) in values.enumerated() {
        let start = i * bits
        let byte = start / 8
        let shift = start % 8
        out[byte] |= UInt8(truncatingIfNeeded: Int(v) << shift)
        if shift + bits > 8 { out[byte + 1] |= UInt8(truncatingIfNeeded: Int(v) >> (8 - shift)) }
    }
    return out
}
