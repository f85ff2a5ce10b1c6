import Foundation

/// One GGUF metadata value as the format encodes it: its 32-bit type id, then the payload. llama.cpp checks
/// each key's type, so writers say it exactly (`uint32`, `float32`, …) or copy a source file's bytes.
public struct GGUFEncodedValue: Sendable, Equatable {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }

    private static func build(_ type: UInt32, _ payload: (inout [UInt8]) -> Void) -> GGUFEncodedValue {
        var b: [UInt8] = []
        append(type, to: &b)
        payload(&b)
        return GGUFEncodedValue(bytes: b)
    }

    static func append<T: FixedWidthInteger>(_ v: T, to b: inout [UInt8]) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    static func append(_ s: String, to b: inout [UInt8]) {
        append(UInt64(s.utf8.count), to: &b)
        b.append(contentsOf: s.utf8)
    }

    public static func uint32(_ v: UInt32) -> Self { build(4) { append(v, to: &$0) } }
    public static func int32(_ v: Int32) -> Self { build(5) { append(v, to: &$0) } }
    public static func float32(_ v: Float) -> Self { build(6) { append(v.bitPattern, to: &$0) } }
    public static func float64(_ v: Double) -> Self { build(12) { append(v.bitPattern, to: &$0) } }
    public static func bool(_ v: Bool) -> Self { build(7) { $0.append(v ? 1 : 0) } }
    public static func string(_ v: String) -> Self { build(8) { append(v, to: &$0) } }
    public static func strings(_ v: [String]) -> Self {
        build(9) { b in
            append(UInt32(8), to: &b)
            append(UInt64(v.count), to: &b)
            for s in v { append(s, to: &b) }
        }
    }
    public static func float32s(_ v: [Float]) -> Self {
        build(9) { b in
            append(UInt32(6), to: &b)
            append(UInt64(v.count), to: &b)
            for x in v { append(x.bitPattern, to: &b) }
        }
    }
    public static func bools(_ v: [Bool]) -> Self {
        build(9) { b in
            append(UInt32(7), to: &b)
            append(UInt64(v.count), to: &b)
            for x in v { b.append(x ? 1 : 0) }
        }
    }
    public static func int32s(_ v: [Int32]) -> Self {
        build(9) { b in
            append(UInt32(5), to: &b)
            append(UInt64(v.count), to: &b)
            for x in v { append(x, to: &b) }
        }
    }

    /// An integer in llama.cpp's usual key type (u32), refused when it does not fit.
    public static func count(_ v: Int, key: String) throws -> Self {
        guard let u = UInt32(exactly: v) else { throw ANELMError("metadata \(key) = \(v) does not fit a GGUF uint32") }
        return .uint32(u)
    }
}

/// What the writer needs to know of a tensor before its data: name, shape (outermost-first, as `Tensor`) and type.
public struct GGUFTensorPlan: Sendable {
    public let name: String
    public let shape: [Int]
    public let type: TensorType

    public init(name: String, shape: [Int], type: TensorType) {
        self.name = name
        self.shape = shape
        self.type = type
    }

    public var byteCount: Int { type.byteCount(elements: shape.reduce(1, *)) ?? 0 }
}

/// Writes a GGUF v3 file front to back: the header (metadata, tensor infos) first, since every tensor's size is
/// known from its plan, then each tensor's data in plan order, padded to the alignment. Nothing is held in
/// memory but the tensor being written. The caller writes into a `StagedOutput`'s path.
public final class GGUFWriter {
    public static let alignment = 32
    private let handle: OutputFile
    private let plans: [GGUFTensorPlan]
    private var next = 0

    public init(path: String, metadata: [(key: String, value: GGUFEncodedValue)], tensors: [GGUFTensorPlan]) throws {
        handle = try OutputFile(creating: path)
        plans = tensors
        var seen = Set<String>()
        for (key, _) in metadata where !seen.insert(key).inserted { throw ANELMError("metadata key \(key) given twice") }
        var names = Set<String>()
        for plan in tensors where !names.insert(plan.name).inserted { throw ANELMError("tensor \(quoted(plan.name)) given twice") }

        var header: [UInt8] = []
        GGUFEncodedValue.append(UInt32(0x4655_4747), to: &header)  // "GGUF"
        GGUFEncodedValue.append(UInt32(3), to: &header)
        GGUFEncodedValue.append(UInt64(tensors.count), to: &header)
        GGUFEncodedValue.append(UInt64(metadata.count), to: &header)
        for (key, value) in metadata {
            GGUFEncodedValue.append(key, to: &header)
            header.append(contentsOf: value.bytes)
        }
        var offset = 0
        for plan in tensors {
            guard plan.type.byteCount(elements: plan.shape.reduce(1, *)) != nil, !plan.shape.isEmpty else {
                throw ANELMError("tensor \(quoted(plan.name)) of shape \(plan.shape) cannot be stored as \(plan.type)")
            }
            GGUFEncodedValue.append(plan.name, to: &header)
            GGUFEncodedValue.append(UInt32(plan.shape.count), to: &header)
            for d in plan.shape.reversed() { GGUFEncodedValue.append(UInt64(d), to: &header) }  // GGUF lists innermost first
            GGUFEncodedValue.append(plan.type.rawValue, to: &header)
            GGUFEncodedValue.append(UInt64(offset), to: &header)
            offset += Self.padded(plan.byteCount)
        }
        header.append(contentsOf: [UInt8](repeating: 0, count: Self.padded(header.count) - header.count))
        try handle.write(header)
    }

    private static func padded(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    /// The next tensor's bytes, in plan order.
    public func write(_ bytes: [UInt8]) throws {
        guard next < plans.count else { throw ANELMError("more tensors written than planned") }
        let plan = plans[next]
        guard bytes.count == plan.byteCount else {
            throw ANELMError("tensor \(quoted(plan.name)): \(bytes.count) bytes written, \(plan.byteCount) planned")
        }
        try handle.write(bytes)
        let padding = Self.padded(bytes.count) - bytes.count
        if padding > 0 { try handle.write([UInt8](repeating: 0, count: padding)) }
        next += 1
    }

    /// Checks every planned tensor was written and flushes to disk (so a full disk is an error here, not later).
    public func finish() throws {
        guard next == plans.count else { throw ANELMError("\(plans.count - next) planned tensors were not written") }
        try handle.close()
    }
}
