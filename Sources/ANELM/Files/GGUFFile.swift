import Foundation

/// One GGUF metadata value (every type the format defines).
public indirect enum GGUFValue: Sendable, Equatable {
    case uint(UInt64)
    case int(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)
    case array([GGUFValue])

    /// The value as an Int, when it is an integer that fits.
    public var intValue: Int? {
        switch self {
        case .uint(let v): return v <= UInt64(Int.max) ? Int(v) : nil
        case .int(let v): return Int(exactly: v)
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .float(let v): return v
        case .uint(let v): return Double(v)
        case .int(let v): return Double(v)
        default: return nil
        }
    }
}

/// Where one tensor lives in a GGUF file. `shape` is outermost-first (GGUF's own order reversed).
public struct GGUFTensorInfo: Sendable {
    public let name: String
    public let shape: [Int]
    /// GGML's type id.
    public let ggmlType: UInt32
    /// Offset from the start of the tensor data section.
    public let offset: Int
    /// Bytes the tensor takes, when its type is one anelm reads.
    public let byteSize: Int

    public var typeName: String { TensorType.ggmlName(of: ggmlType) }
}

/// A GGUF v2/v3 file: metadata and tensor infos parsed, tensor data memory-mapped.
public final class GGUFFile: TensorStore, @unchecked Sendable {
    public let path: String
    public let version: Int
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    public let tensorInfos: [GGUFTensorInfo]
    public let alignment: Int
    /// Offset of the tensor data section in the file.
    public let dataOffset: Int
    /// Where the metadata key/value pairs are in the file, and how many the header declares.
    let metadataBytes: Range<Int>
    let metadataCount: Int
    /// Where each key's value is in the file: its type id and payload, as a writer copies it.
    private let valueBytes: [String: Range<Int>]
    private let file: MappedFile
    private let infoByName: [String: GGUFTensorInfo]

    public convenience init(path: String) throws {
        try self.init(file: try MappedFile(path: path))
    }

    init(file: MappedFile) throws {
        self.file = file
        path = file.path
        let name = URL(fileURLWithPath: file.path).lastPathComponent
        var r = ByteReader(file.bytes, context: "GGUF \(name)")
        guard file.bytes.count >= 4, try r.read(UInt32.self) == 0x4655_4747 else {
            throw ANELMError("\(name) is not a GGUF file (bad magic)")
        }
        let version = Int(try r.read(UInt32.self))
        guard version == 2 || version == 3 else {
            throw ANELMError("\(name): GGUF version \(version) is not supported (2 and 3 are)")
        }
        self.version = version
        // Every tensor info takes at least 24 bytes and every metadata pair at least 12.
        let tensorCount = try r.readCount(elementSize: 24, what: "tensor count")
        let kvCount = try r.readCount(elementSize: 12, what: "metadata count")

        var keys: [String] = []
        var values: [String: GGUFValue] = [:]
        var ranges: [String: Range<Int>] = [:]
        keys.reserveCapacity(kvCount)
        let metadataStart = r.offset
        for _ in 0..<kvCount {
            let key = try Self.readString(&r)
            let valueStart = r.offset
            let type = try r.read(UInt32.self)
            let value = try Self.readValue(type: type, &r, depth: 0)
            if values.updateValue(value, forKey: key) == nil { keys.append(key) }
            ranges[key] = valueStart..<r.offset
        }
        metadataKeys = keys
        metadata = values
        valueBytes = ranges
        metadataBytes = metadataStart..<r.offset
        metadataCount = kvCount

        var alignment = 32
        if let value = values["general.alignment"] {
            guard let a = value.intValue, a > 0, a <= 1 << 20, a & (a - 1) == 0 else {
                throw ANELMError("\(name): general.alignment must be a power of two, got \(value)")
            }
            alignment = a
        }
        self.alignment = alignment

        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(tensorCount)
        var byName: [String: GGUFTensorInfo] = [:]
        for _ in 0..<tensorCount {
            let tensorName = try Self.readString(&r)
            let dimCount = Int(try r.read(UInt32.self))
            guard dimCount >= 1, dimCount <= 4 else { throw ANELMError("\(name): tensor \(quoted(tensorName)) has \(dimCount) dimensions") }
            var dims: [Int] = []
            for _ in 0..<dimCount {
                let d = try r.read(UInt64.self)
                guard d >= 1, d <= 1 << 40 else { throw ANELMError("\(name): tensor \(quoted(tensorName)) has dimension \(d)") }
                dims.append(Int(d))
            }
            let type = try r.read(UInt32.self)
            let offset = try r.read(UInt64.self)
            guard offset <= UInt64(file.bytes.count) else {
                throw ANELMError("\(name): tensor \(quoted(tensorName)) offset \(offset) is past the end of the file")
            }
            var elements = 1
            for d in dims {
                let (p, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw ANELMError("\(name): tensor \(quoted(tensorName)) is too large") }
                elements = p
            }
            let size = TensorType(rawValue: type).flatMap { $0.byteCount(elements: elements) } ?? 0
            let info = GGUFTensorInfo(name: tensorName, shape: dims.reversed(), ggmlType: type, offset: Int(offset), byteSize: size)
            guard byName.updateValue(info, forKey: tensorName) == nil else { throw ANELMError("\(name): tensor \(quoted(tensorName)) appears twice") }
            infos.append(info)
        }
        tensorInfos = infos
        infoByName = byName
        let (aligned, overflow) = r.offset.addingReportingOverflow(alignment - 1)
        guard !overflow else { throw ANELMError("\(name): bad header size") }
        dataOffset = aligned / alignment * alignment
        for info in infos where TensorType(rawValue: info.ggmlType) != nil {
            guard info.offset % alignment == 0 else { throw ANELMError("\(name): tensor \(quoted(info.name)) is not aligned to \(alignment) bytes") }
            guard dataOffset <= file.bytes.count, info.byteSize <= file.bytes.count - dataOffset,
                info.offset <= file.bytes.count - dataOffset - info.byteSize
            else {
                throw ANELMError(
                    "\(name): tensor \(quoted(info.name)) (\(info.byteSize) bytes at \(info.offset)) runs past the end of the file; is it truncated?")
            }
        }
    }

    public var tensorNames: [String] { tensorInfos.map(\.name) }

    /// A GGUF v3 file with all of this file's metadata, byte for byte (v2 and v3 encode it alike), and no
    /// tensors: the tokenizer and chat template without the weights.
    public func metadataOnlyData() -> Data {
        var d = Data()
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        put(UInt32(0x4655_4747))  // "GGUF"
        put(UInt32(3))
        put(UInt64(0))  // tensors
        put(UInt64(metadataCount))
        d.append(contentsOf: UnsafeRawBufferPointer(rebasing: file.bytes[metadataBytes]))
        while d.count % alignment != 0 { d.append(0) }  // the (empty) data section starts aligned
        return d
    }

    /// The value of `key` exactly as the file encodes it (type id, then payload): what a writer copies.
    public func encodedValue(_ key: String) -> GGUFEncodedValue? {
        guard let range = valueBytes[key] else { return nil }
        return GGUFEncodedValue(bytes: Array(UnsafeRawBufferPointer(rebasing: file.bytes[range])))
    }

    /// The tensor's bytes in place; throws for a GGML type anelm cannot read.
    public func tensor(named name: String) throws -> Tensor? {
        guard let info = infoByName[name] else { return nil }
        guard let type = TensorType(rawValue: info.ggmlType) else {
            throw ANELMError(
                "tensor \(quoted(name)) has type \(info.typeName), which anelm does not support yet (supported: \(TensorType.allCases.map(\.description).joined(separator: ", ")))"
            )
        }
        guard info.shape.last.map({ $0 % type.blockSize == 0 }) ?? false else {
            throw ANELMError("tensor \(quoted(name)): row length \(info.shape.last ?? 0) is not a multiple of the \(type) block size (\(type.blockSize))")
        }
        let start = dataOffset + info.offset
        let data = UnsafeRawBufferPointer(rebasing: file.bytes[start..<(start + info.byteSize)])
        return Tensor(name: name, type: type, shape: info.shape, data: data, owner: file)
    }

    // MARK: Typed metadata access (nil when absent or of another type)

    public func string(_ key: String) -> String? {
        if case .string(let s)? = metadata[key] { return s }
        return nil
    }
    public func int(_ key: String) -> Int? { metadata[key]?.intValue }
    public func double(_ key: String) -> Double? { metadata[key]?.doubleValue }
    public func bool(_ key: String) -> Bool? {
        if case .bool(let b)? = metadata[key] { return b }
        return nil
    }
    public func arrayCount(_ key: String) -> Int? {
        if case .array(let a)? = metadata[key] { return a.count }
        return nil
    }
    /// A string array; nil when absent or when any element is not a string.
    public func strings(_ key: String) -> [String]? {
        guard case .array(let a)? = metadata[key] else { return nil }
        var out: [String] = []
        out.reserveCapacity(a.count)
        for v in a {
            guard case .string(let s) = v else { return nil }
            out.append(s)
        }
        return out
    }
    public func ints(_ key: String) -> [Int]? {
        guard case .array(let a)? = metadata[key] else { return nil }
        var out: [Int] = []
        out.reserveCapacity(a.count)
        for v in a {
            guard let i = v.intValue else { return nil }
            out.append(i)
        }
        return out
    }
    public func floats(_ key: String) -> [Float]? {
        guard case .array(let a)? = metadata[key] else { return nil }
        var out: [Float] = []
        out.reserveCapacity(a.count)
        for v in a {
            guard let d = v.doubleValue else { return nil }
            out.append(Float(d))
        }
        return out
    }

    // MARK: Parsing

    static func readString(_ r: inout ByteReader) throws -> String {
        let length = try r.readCount(elementSize: 1, what: "string length")
        let raw = try r.readBytes(length)
        // Lossy on invalid UTF-8 (as llama.cpp, which keeps raw bytes): tokens of broken files stay readable.
        return String(decoding: raw, as: UTF8.self)
    }

    static func readValue(type: UInt32, _ r: inout ByteReader, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint(UInt64(try r.read(UInt8.self)))
        case 1: return .int(Int64(try r.read(Int8.self)))
        case 2: return .uint(UInt64(try r.read(UInt16.self)))
        case 3: return .int(Int64(try r.read(Int16.self)))
        case 4: return .uint(UInt64(try r.read(UInt32.self)))
        case 5: return .int(Int64(try r.read(Int32.self)))
        case 6: return .float(Double(try r.readFloat()))
        case 7:
            let b = try r.read(UInt8.self)
            guard b <= 1 else { throw ANELMError("\(r.context): bool value \(b) at offset \(r.offset - 1)") }
            return .bool(b == 1)
        case 8: return .string(try readString(&r))
        case 9:
            guard depth < 4 else { throw ANELMError("\(r.context): arrays nested too deeply") }
            let elementType = try r.read(UInt32.self)
            let count = try r.readCount(elementSize: minimumSize(of: elementType), what: "array length")
            var items: [GGUFValue] = []
            items.reserveCapacity(count)
            for _ in 0..<count { items.append(try readValue(type: elementType, &r, depth: depth + 1)) }
            return .array(items)
        case 10: return .uint(try r.read(UInt64.self))
        case 11: return .int(try r.read(Int64.self))
        case 12: return .float(try r.readDouble())
        default: throw ANELMError("\(r.context): unknown metadata value type \(type) at offset \(r.offset - 4)")
        }
    }

    /// Fewest bytes one value of `type` takes (bounds the array length check).
    private static func minimumSize(of type: UInt32) -> Int {
        switch type {
        case 0, 1, 7: return 1
        case 2, 3: return 2
        case 4, 5, 6: return 4
        case 8, 10, 11, 12: return 8
        case 9: return 12
        default: return 1
        }
    }
}

extension GGUFTokenizerData {
    /// The tokenizer as GGUF stores it under `tokenizer.ggml.*`.
    public init(_ file: GGUFFile) throws {
        guard let model = file.string("tokenizer.ggml.model") else { throw ANELMError("the GGUF file has no tokenizer (tokenizer.ggml.model)") }
        guard let tokens = file.strings("tokenizer.ggml.tokens") else { throw ANELMError("the GGUF file has no tokenizer.ggml.tokens string array") }
        let types = file.ints("tokenizer.ggml.token_type") ?? []
        guard types.isEmpty || types.count == tokens.count else {
            throw ANELMError("tokenizer.ggml.token_type has \(types.count) entries for \(tokens.count) tokens")
        }
        self.init(
            model: model, preTokenizer: file.string("tokenizer.ggml.pre"), tokens: tokens,
            merges: file.strings("tokenizer.ggml.merges") ?? [], tokenTypes: types,
            bosTokenId: file.int("tokenizer.ggml.bos_token_id"), eosTokenId: file.int("tokenizer.ggml.eos_token_id"),
            padTokenId: file.int("tokenizer.ggml.padding_token_id"), unknownTokenId: file.int("tokenizer.ggml.unknown_token_id"),
            addBosToken: file.bool("tokenizer.ggml.add_bos_token"), addEosToken: file.bool("tokenizer.ggml.add_eos_token"),
            chatTemplate: file.string("tokenizer.chat_template"), architecture: file.string("general.architecture"),
            scores: file.floats("tokenizer.ggml.scores"), addSpacePrefix: file.bool("tokenizer.ggml.add_space_prefix"))
    }
}
