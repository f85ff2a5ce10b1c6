import Foundation

/// Reads back the MIL program of an ML Program model (model.mlmodel), as much of it as the ANE lint
/// needs: per function its inputs and states, and per op its type, the types of its inputs (bound names
/// and immediate or blob values) and of its outputs. Independent of the writer: it walks the protobuf
/// wire format by the field numbers of Model.proto and MIL.proto.
public struct MILProgramReader {
    /// A tensor type; a nil dimension is not static (MIL.proto `Dimension.unknown`).
    public struct TensorType: Equatable, Sendable {
        public var dataType: UInt64
        public var shape: [Int?]
        public var isStatic: Bool { shape.allSatisfy { $0 != nil } }
        public var staticShape: [Int] { shape.map { $0 ?? -1 } }
        public var dataTypeName: String {
            switch dataType {
            case 1: return "bool"
            case 2: return "string"
            case 10: return "fp16"
            case 11: return "fp32"
            case 12: return "fp64"
            case 13: return "bf16"
            case 21: return "int8"
            case 22: return "int16"
            case 23: return "int32"
            case 24: return "int64"
            case 31: return "uint8"
            case 35: return "uint4"
            case 38: return "uint6"
            default: return "type \(dataType)"
            }
        }
    }

    public struct Operation: Sendable {
        public var type: String
        /// The first output's name (the op's name in the program; its type when it has no output).
        public var name: String
        /// Each named input's first binding: the variable it names, or the type of an immediate/blob value.
        public var inputs: [String: (name: String?, type: TensorType?)]
        public var outputs: [(name: String, type: TensorType?)]
    }

    public struct Function: Sendable {
        public var name: String
        public var inputs: [(name: String, type: TensorType?)]
        public var states: [(name: String, type: TensorType?)]
        public var operations: [Operation]

        /// The type of variable `name`: a function input, a state, or an op's output.
        public func type(of name: String) -> TensorType? {
            if let t = inputs.first(where: { $0.name == name })?.type { return t }
            if let t = states.first(where: { $0.name == name })?.type { return t }
            for op in operations { if let t = op.outputs.first(where: { $0.name == name })?.type { return t } }
            return nil
        }
    }

    public var specificationVersion: Int
    public var functions: [Function]

    /// Reads `Data/com.apple.CoreML/model.mlmodel` of the package at `packagePath`.
    public init(package packagePath: String) throws {
        let path = URL(fileURLWithPath: packagePath).appendingPathComponent(CoreMLPackage.modelPath).path
        guard let data = FileManager.default.contents(atPath: path) else { throw ANELMError("no \(CoreMLPackage.modelPath) in \(packagePath)") }
        try self.init(model: [UInt8](data))
    }

    public init(model bytes: [UInt8]) throws {
        let model = try Message(bytes)
        specificationVersion = Int(model.varint(1) ?? 0)  // Model.specificationVersion = 1
        guard let programBytes = model.bytes(502).first else {  // Model.mlProgram = 502
            throw ANELMError("model.mlmodel holds no ML Program")
        }
        let program = try Message(programBytes)
        var functions = [Function]()
        for entry in program.bytes(2) {  // Program.functions = 2 (map)
            let e = try Message(entry)
            let name = e.string(1) ?? ""
            let f = try Message(e.bytes(2).first ?? [])
            var inputs: [(String, TensorType?)] = []
            var states: [(String, TensorType?)] = []
            for input in f.bytes(1) {  // Function.inputs = 1
                let (n, valueType) = try Self.namedValueType(input)
                let value = try Message(valueType)
                if let state = value.bytes(5).first {  // ValueType.stateType = 5
                    let wrapped = try Message(try Message(state).bytes(1).first ?? [])  // StateType.wrappedType = 1
                    states.append((n, try wrapped.bytes(1).first.map(Self.tensorType)))
                } else {
                    inputs.append((n, try value.bytes(1).first.map(Self.tensorType)))
                }
            }
            var operations = [Operation]()
            for block in f.bytes(3) {  // Function.block_specializations = 3 (map)
                let b = try Message(try Message(block).bytes(2).first ?? [])
                for op in b.bytes(3) { operations.append(try Self.operation(op)) }  // Block.operations = 3
            }
            functions.append(Function(name: name, inputs: inputs, states: states, operations: operations))
        }
        self.functions = functions
    }

    static func operation(_ bytes: [UInt8]) throws -> Operation {
        let op = try Message(bytes)
        var inputs: [String: (name: String?, type: TensorType?)] = [:]
        for entry in op.bytes(2) {  // Operation.inputs = 2 (map<string, Argument>)
            let e = try Message(entry)
            let argument = try Message(e.bytes(2).first ?? [])
            guard let binding = try argument.bytes(1).first.map(Message.init) else { continue }  // Argument.arguments = 1
            if let name = binding.string(1) {  // Binding.name = 1
                inputs[e.string(1) ?? ""] = (name, nil)
            } else if let value = binding.bytes(2).first {  // Binding.value = 2
                inputs[e.string(1) ?? ""] = (nil, try Self.valueType(value))
            }
        }
        var outputs: [(String, TensorType?)] = []
        for output in op.bytes(3) {  // Operation.outputs = 3
            let (n, valueType) = try Self.namedValueType(output)
            outputs.append((n, try Message(valueType).bytes(1).first.map(Self.tensorType)))
        }
        let type = op.string(1) ?? ""
        for entry in op.bytes(5) {  // const's `val` counts as an input type
            let e = try Message(entry)
            if e.string(1) == "val", let value = e.bytes(2).first { inputs["val"] = (nil, try Self.valueType(value)) }
        }
        return Operation(type: type, name: outputs.first?.0 ?? type, inputs: inputs, outputs: outputs)
    }

    /// NamedValueType: (name = 1, type = 2).
    static func namedValueType(_ bytes: [UInt8]) throws -> (String, [UInt8]) {
        let m = try Message(bytes)
        return (m.string(1) ?? "", m.bytes(2).first ?? [])
    }

    /// Value.type = 2 → ValueType.tensorType = 1.
    static func valueType(_ bytes: [UInt8]) throws -> TensorType? {
        guard let valueType = try Message(bytes).bytes(2).first else { return nil }
        return try Message(valueType).bytes(1).first.map(tensorType)
    }

    /// TensorType: dataType = 1, dimensions = 3 (Dimension.constant = 1 → size = 1; unknown = 2).
    static func tensorType(_ bytes: [UInt8]) throws -> TensorType {
        let t = try Message(bytes)
        let shape = try t.bytes(3).map { d -> Int? in
            guard let constant = try Message(d).bytes(1).first else { return nil }
            return Int(try Message(constant).varint(1) ?? 0)
        }
        return TensorType(dataType: t.varint(1) ?? 0, shape: shape)
    }

    /// The fields of one protobuf message (varint and length-delimited ones; fixed-width ones skipped).
    struct Message {
        var fields: [(number: Int, varint: UInt64?, bytes: [UInt8]?)] = []

        init(_ data: [UInt8]) throws {
            var i = 0
            func varint() throws -> UInt64 {
                var v: UInt64 = 0
                var shift: UInt64 = 0
                while true {
                    guard i < data.count, shift < 64 else { throw ANELMError("model.mlmodel: truncated varint") }
                    let b = data[i]
                    i += 1
                    v |= UInt64(b & 0x7F) << shift
                    if b < 0x80 { return v }
                    shift += 7
                }
            }
            while i < data.count {
                let key = try varint()
                switch key & 7 {
                case 0: fields.append((Int(key >> 3), try varint(), nil))
                case 2:
                    let n = try varint()
                    guard n <= UInt64(data.count - i) else { throw ANELMError("model.mlmodel: truncated field") }
                    fields.append((Int(key >> 3), nil, Array(data[i..<(i + Int(n))])))
                    i += Int(n)
                case 1: i += 8
                case 5: i += 4
                default: throw ANELMError("model.mlmodel: wire type \(key & 7)")
                }
                guard i <= data.count else { throw ANELMError("model.mlmodel: truncated field") }
            }
        }

        func varint(_ n: Int) -> UInt64? { fields.first { $0.number == n }?.varint }
        func bytes(_ n: Int) -> [[UInt8]] { fields.filter { $0.number == n }.compactMap(\.bytes) }
        func string(_ n: Int) -> String? { bytes(n).first.map { String(decoding: $0, as: UTF8.self) } }
    }
}
