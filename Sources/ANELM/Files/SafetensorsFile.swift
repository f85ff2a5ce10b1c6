import Foundation

/// One `.safetensors` file: a JSON header of tensor entries, then the raw data, memory-mapped.
public final class SafetensorsFile: TensorStore, @unchecked Sendable {
    public struct Entry: Sendable {
        public let dtype: String
        public let shape: [Int]
        /// Byte range inside the data section.
        public let range: Range<Int>
    }

    public let path: String
    public let entries: [String: Entry]
    public let tensorNames: [String]
    private let file: MappedFile
    private let dataStart: Int

    public convenience init(path: String) throws {
        try self.init(file: try MappedFile(path: path))
    }

    init(file: MappedFile) throws {
        self.file = file
        path = file.path
        let name = URL(fileURLWithPath: file.path).lastPathComponent
        var r = ByteReader(file.bytes, context: "safetensors \(name)")
        let headerLength = try r.readCount(elementSize: 1, what: "header length")
        guard headerLength <= 100_000_000 else { throw ANELMError("\(name): safetensors header of \(headerLength) bytes is implausible") }
        let header = try r.readBytes(headerLength)
        dataStart = r.offset
        guard let object = try JSONValue.parse(header, source: "\(name) (safetensors header)").objectValue else {
            throw ANELMError("\(name): the safetensors header is not a JSON object")
        }
        let dataLength = file.bytes.count - dataStart
        var entries: [String: Entry] = [:]
        for (key, value) in object where key != "__metadata__" {
            guard let dtype = value["dtype"]?.stringValue,
                let shape = value["shape"]?.arrayValue?.map(\.integerValue), !shape.contains(where: { $0 == nil }),
                let offsets = value["data_offsets"]?.arrayValue?.compactMap(\.integerValue), offsets.count == 2
            else {
                throw ANELMError("\(name): tensor \(quoted(key)) has a malformed header entry")
            }
            let dims = shape.compactMap { $0 }
            guard offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= dataLength else {
                throw ANELMError("\(name): tensor \(quoted(key)) data \(offsets) lies outside the file (\(dataLength) data bytes); is it truncated?")
            }
            guard dims.allSatisfy({ $0 >= 0 && $0 <= 1 << 40 }) else { throw ANELMError("\(name): tensor \(quoted(key)) has shape \(dims)") }
            entries[key] = Entry(dtype: dtype, shape: dims, range: offsets[0]..<offsets[1])
        }
        self.entries = entries
        tensorNames = entries.keys.sorted()
    }

    /// The tensor's bytes in place. F32, F16 and BF16 are supported; other dtypes throw, naming it.
    public func tensor(named name: String) throws -> Tensor? {
        guard let entry = entries[name] else { return nil }
        let type: TensorType
        switch entry.dtype {
        case "F32": type = .f32
        case "F16": type = .f16
        case "BF16": type = .bf16
        default: throw ANELMError("tensor \(quoted(name)) has dtype \(quoted(entry.dtype)); anelm reads F32, F16 and BF16 safetensors")
        }
        var elements = 1
        for d in entry.shape {
            let (p, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow else { throw ANELMError("tensor \(quoted(name)) is too large") }
            elements = p
        }
        guard type.byteCount(elements: elements) == entry.range.count else {
            throw ANELMError(
                "tensor \(quoted(name)): shape \(entry.shape) of \(entry.dtype) needs \(elements * type.bytesPerBlock) bytes, the file has \(entry.range.count)"
            )
        }
        let start = dataStart + entry.range.lowerBound
        let data = UnsafeRawBufferPointer(rebasing: file.bytes[start..<(start + entry.range.count)])
        return Tensor(name: name, type: type, shape: entry.shape.isEmpty ? [1] : entry.shape, data: data, owner: file)
    }
}

/// Several safetensors files seen as one store (sharded checkpoints).
public final class SafetensorsCollection: TensorStore, @unchecked Sendable {
    public let files: [SafetensorsFile]
    public let tensorNames: [String]
    private let fileByTensor: [String: SafetensorsFile]

    public init(files: [SafetensorsFile]) throws {
        self.files = files
        var map: [String: SafetensorsFile] = [:]
        for file in files {
            for name in file.tensorNames {
                guard map.updateValue(file, forKey: name) == nil else { throw ANELMError("tensor \(quoted(name)) appears in more than one safetensors file") }
            }
        }
        fileByTensor = map
        tensorNames = map.keys.sorted()
    }

    public func tensor(named name: String) throws -> Tensor? {
        try fileByTensor[name]?.tensor(named: name)
    }
}
