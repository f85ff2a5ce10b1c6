/// The Protocol Buffers wire format (protobuf.dev/programming-guides/encoding), just enough to write
/// Core ML's messages: each field is a tag `(number << 3) | wire type` followed by its payload.
/// proto3 rules: a scalar at its default (0, false, "") is not written unless it is a oneof member,
/// repeated numbers are packed.
public struct ProtobufWriter: Sendable {
    public enum WireType: UInt64 {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
        case fixed32 = 5
    }

    public private(set) var bytes: [UInt8] = []

    public init() {}

    // MARK: Primitives

    /// Base-128 varint, least significant group first, high bit = more bytes follow.
    public mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func tag(_ field: Int, _ wire: WireType) { varint(UInt64(field) << 3 | wire.rawValue) }

    /// ZigZag: small magnitudes of either sign become small varints (sint32/sint64).
    public static func zigzag(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }

    private mutating func littleEndian<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    // MARK: Fields

    /// uint32/uint64/enum fields.
    public mutating func uint(_ field: Int, _ value: UInt64, always: Bool = false) {
        guard value != 0 || always else { return }
        tag(field, .varint)
        varint(value)
    }

    /// int32/int64 fields: two's complement, so negatives take ten bytes.
    public mutating func int(_ field: Int, _ value: Int64, always: Bool = false) {
        uint(field, UInt64(bitPattern: value), always: always)
    }

    public mutating func sint(_ field: Int, _ value: Int64, always: Bool = false) {
        uint(field, Self.zigzag(value), always: always)
    }

    public mutating func bool(_ field: Int, _ value: Bool, always: Bool = false) {
        uint(field, value ? 1 : 0, always: always)
    }

    public mutating func fixed32(_ field: Int, _ value: UInt32) {
        tag(field, .fixed32)
        littleEndian(value)
    }

    public mutating func fixed64(_ field: Int, _ value: UInt64) {
        tag(field, .fixed64)
        littleEndian(value)
    }

    public mutating func float(_ field: Int, _ value: Float) { fixed32(field, value.bitPattern) }
    public mutating func double(_ field: Int, _ value: Double) { fixed64(field, value.bitPattern) }

    /// A length-delimited field: bytes, strings and sub-messages.
    public mutating func bytes<C: Collection>(_ field: Int, _ payload: C, always: Bool = false) where C.Element == UInt8 {
        guard !payload.isEmpty || always else { return }
        tag(field, .lengthDelimited)
        varint(UInt64(payload.count))
        bytes.append(contentsOf: payload)
    }

    public mutating func string(_ field: Int, _ value: String, always: Bool = false) {
        bytes(field, Array(value.utf8), always: always)
    }

    /// A sub-message, always written (presence matters for message fields).
    public mutating func message(_ field: Int, _ body: (inout ProtobufWriter) -> Void) {
        var inner = ProtobufWriter()
        body(&inner)
        bytes(field, inner.bytes, always: true)
    }

    /// One entry of a `map<string, Message>` field: a message with the key as field 1, the value as field 2.
    public mutating func mapEntry(_ field: Int, key: String, _ value: (inout ProtobufWriter) -> Void) {
        message(field) { entry in
            entry.string(1, key, always: true)
            entry.message(2, value)
        }
    }

    /// One entry of a `map<string, string>` field.
    public mutating func mapEntry(_ field: Int, key: String, value: String) {
        message(field) { entry in
            entry.string(1, key, always: true)
            entry.string(2, value, always: true)
        }
    }

    // MARK: Packed repeated fields (one length-delimited run of payloads)

    public mutating func packedVarints(_ field: Int, _ values: [UInt64]) {
        guard !values.isEmpty else { return }
        var run = ProtobufWriter()
        for v in values { run.varint(v) }
        bytes(field, run.bytes)
    }

    public mutating func packedInts(_ field: Int, _ values: [Int64]) { packedVarints(field, values.map { UInt64(bitPattern: $0) }) }
    public mutating func packedBools(_ field: Int, _ values: [Bool]) { packedVarints(field, values.map { $0 ? 1 : 0 }) }

    public mutating func packedFloats(_ field: Int, _ values: [Float]) {
        guard !values.isEmpty else { return }
        var run = ProtobufWriter()
        for v in values { run.littleEndian(v.bitPattern) }
        bytes(field, run.bytes)
    }
}
