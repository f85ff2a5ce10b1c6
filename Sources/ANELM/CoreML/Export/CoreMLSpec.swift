// The Core ML messages anelm writes, as plain values with hand-written protobuf encoders.
// Field numbers are those of apple/coremltools mlmodel/format/{Model,FeatureTypes,MIL}.proto (cited
// per field as `File.proto Message.field = N`).

// MARK: MIL.proto

/// MIL.proto `DataType` (the values anelm uses).
public enum MILDataType: UInt64, Sendable {
    case bool = 1
    case string = 2
    case float16 = 10
    case float32 = 11
    case int8 = 21
    case int32 = 23
    case uint8 = 31
    case uint4 = 35
    case uint6 = 38

    /// Bits one element takes in weight.bin.
    public var bits: Int {
        switch self {
        case .bool, .int8, .uint8: return 8
        case .float16: return 16
        case .float32, .int32: return 32
        case .uint4: return 4
        case .uint6: return 6
        case .string: return 0
        }
    }
}

/// MIL.proto `TensorType` with static dimensions; rank 0 is a scalar.
public struct MILTensorType: Equatable, Sendable {
    public var dataType: MILDataType
    public var shape: [Int]

    public init(dataType: MILDataType, shape: [Int]) {
        self.dataType = dataType
        self.shape = shape
    }

    public func encode(into w: inout ProtobufWriter) {
        w.uint(1, dataType.rawValue)  // TensorType.dataType = 1
        w.int(2, Int64(shape.count))  // TensorType.rank = 2
        for d in shape {  // TensorType.dimensions = 3
            w.message(3) { dim in
                dim.message(1) { $0.uint(1, UInt64(d)) }  // Dimension.constant = 1, ConstantDimension.size = 1
            }
        }
    }
}

/// MIL.proto `ValueType`: a tensor, or a state wrapping one.
public enum MILValueType: Equatable, Sendable {
    case tensor(MILTensorType)
    case state(MILTensorType)

    public func encode(into w: inout ProtobufWriter) {
        switch self {
        case .tensor(let t): w.message(1) { t.encode(into: &$0) }  // ValueType.tensorType = 1
        case .state(let t): w.message(5) { s in s.message(1) { MILValueType.tensor(t).encode(into: &$0) } }  // ValueType.stateType = 5, StateType.wrappedType = 1
        }
    }
}

/// MIL.proto `Value`: an immediate tensor, or a blob in weight.bin found by its metadata offset.
public struct MILValue: Sendable {
    public enum Storage: Sendable {
        case ints([Int32])
        case bools([Bool])
        case strings([String])
        /// fp16/int8/uint8 and sub-byte values travel as raw little-endian bytes.
        case bytes([UInt8])
        case blob(file: String, offset: UInt64)
    }

    public var type: MILTensorType
    public var storage: Storage

    public init(type: MILTensorType, storage: Storage) {
        self.type = type
        self.storage = storage
    }

    public static func string(_ s: String) -> MILValue { MILValue(type: MILTensorType(dataType: .string, shape: []), storage: .strings([s])) }
    public static func int32(_ v: Int32) -> MILValue { MILValue(type: MILTensorType(dataType: .int32, shape: []), storage: .ints([v])) }
    public static func int32s(_ v: [Int32]) -> MILValue { MILValue(type: MILTensorType(dataType: .int32, shape: [v.count]), storage: .ints(v)) }
    public static func bool(_ v: Bool) -> MILValue { MILValue(type: MILTensorType(dataType: .bool, shape: []), storage: .bools([v])) }
    public static func bools(_ v: [Bool]) -> MILValue { MILValue(type: MILTensorType(dataType: .bool, shape: [v.count]), storage: .bools(v)) }
    public static func fp16(_ bits: [UInt16], shape: [Int]) -> MILValue {
        MILValue(type: MILTensorType(dataType: .float16, shape: shape), storage: .bytes(littleEndianBytes(bits)))
    }

    public func encode(into w: inout ProtobufWriter) {
        w.message(2) { MILValueType.tensor(type).encode(into: &$0) }  // Value.type = 2
        switch storage {
        case .blob(let file, let offset):
            w.message(5) { b in  // Value.blobFileValue = 5
                b.string(1, file)  // BlobFileValue.fileName = 1
                b.uint(2, offset)  // BlobFileValue.offset = 2
            }
        case .ints, .bools, .strings, .bytes:
            w.message(3) { immediate in  // Value.immediateValue = 3
                immediate.message(1) { tensor in  // ImmediateValue.tensor = 1
                    switch storage {
                    case .ints(let v): tensor.message(2) { $0.packedInts(1, v.map(Int64.init)) }  // TensorValue.ints = 2, RepeatedInts.values = 1
                    case .bools(let v): tensor.message(3) { $0.packedBools(1, v) }  // TensorValue.bools = 3
                    case .strings(let v): tensor.message(4) { r in v.forEach { r.string(1, $0, always: true) } }  // TensorValue.strings = 4
                    case .bytes(let v): tensor.message(7) { $0.bytes(1, v) }  // TensorValue.bytes = 7, RepeatedBytes.values = 1
                    case .blob: break
                    }
                }
            }
        }
    }
}

/// MIL.proto `Argument.Binding`: a named variable or a literal value.
public enum MILBinding: Sendable {
    case name(String)
    case value(MILValue)

    public func encode(into w: inout ProtobufWriter) {
        switch self {
        case .name(let n): w.string(1, n, always: true)  // Binding.name = 1
        case .value(let v): w.message(2) { v.encode(into: &$0) }  // Binding.value = 2
        }
    }
}

/// MIL.proto `Operation`.
public struct MILOperation: Sendable {
    public var type: String
    public var inputs: [(name: String, bindings: [MILBinding])]
    public var outputs: [(name: String, type: MILValueType)]
    public var attributes: [(name: String, value: MILValue)]

    public init(
        type: String, inputs: [(name: String, bindings: [MILBinding])] = [], outputs: [(name: String, type: MILValueType)] = [],
        attributes: [(name: String, value: MILValue)] = []
    ) {
        self.type = type
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
    }

    public func encode(into w: inout ProtobufWriter) {
        w.string(1, type)  // Operation.type = 1
        for input in inputs {  // Operation.inputs = 2 (map<string, Argument>)
            w.mapEntry(2, key: input.name) { argument in
                for b in input.bindings { argument.message(1) { b.encode(into: &$0) } }  // Argument.arguments = 1
            }
        }
        for output in outputs { w.message(3) { namedValueType(output.name, output.type, &$0) } }  // Operation.outputs = 3
        for attribute in attributes { w.mapEntry(5, key: attribute.name) { attribute.value.encode(into: &$0) } }  // Operation.attributes = 5
    }
}

/// MIL.proto `NamedValueType`.
public func namedValueType(_ name: String, _ type: MILValueType, _ w: inout ProtobufWriter) {
    w.string(1, name)  // NamedValueType.name = 1
    w.message(2) { type.encode(into: &$0) }  // NamedValueType.type = 2
}

/// MIL.proto `Function` with its single block (`block_specializations[opset]`).
public struct MILFunction: Sendable {
    public var inputs: [(name: String, type: MILValueType)]
    public var opset: String
    public var outputs: [String]
    public var operations: [MILOperation]

    public init(inputs: [(name: String, type: MILValueType)], opset: String, outputs: [String], operations: [MILOperation]) {
        self.inputs = inputs
        self.opset = opset
        self.outputs = outputs
        self.operations = operations
    }

    public func encode(into w: inout ProtobufWriter) {
        for input in inputs { w.message(1) { namedValueType(input.name, input.type, &$0) } }  // Function.inputs = 1
        w.string(2, opset)  // Function.opset = 2
        w.mapEntry(3, key: opset) { block in  // Function.block_specializations = 3
            for o in outputs { block.string(2, o, always: true) }  // Block.outputs = 2
            for op in operations { block.message(3) { op.encode(into: &$0) } }  // Block.operations = 3
        }
    }
}

/// MIL.proto `Program`.
public struct MILProgram: Sendable {
    public var functions: [(name: String, function: MILFunction)]

    public init(functions: [(name: String, function: MILFunction)]) { self.functions = functions }

    public func encode(into w: inout ProtobufWriter) {
        w.int(1, 1)  // Program.version = 1
        for f in functions { w.mapEntry(2, key: f.name) { f.function.encode(into: &$0) } }  // Program.functions = 2
    }
}

// MARK: Model.proto / FeatureTypes.proto

/// FeatureTypes.proto `ArrayFeatureType.ArrayDataType`.
public enum CoreMLArrayDataType: UInt64, Sendable {
    case float16 = 65552
    case float32 = 65568
    case int32 = 131104
}

/// Model.proto `FeatureDescription` of a multi-array input/output or a state.
public struct CoreMLFeature: Sendable {
    public var name: String
    public var dataType: CoreMLArrayDataType
    public var shape: [Int]
    public var isState: Bool

    public init(name: String, dataType: CoreMLArrayDataType, shape: [Int], isState: Bool = false) {
        self.name = name
        self.dataType = dataType
        self.shape = shape
        self.isState = isState
    }

    public func encode(into w: inout ProtobufWriter) {
        w.string(1, name)  // FeatureDescription.name = 1
        w.message(3) { type in  // FeatureDescription.type = 3
            let array: (inout ProtobufWriter) -> Void = { a in
                a.packedInts(1, shape.map(Int64.init))  // ArrayFeatureType.shape = 1
                a.uint(2, dataType.rawValue)  // ArrayFeatureType.dataType = 2
            }
            if isState {
                type.message(8) { $0.message(1, array) }  // FeatureType.stateType = 8, StateFeatureType.arrayType = 1
            } else {
                type.message(5, array)  // FeatureType.multiArrayType = 5
            }
        }
    }
}

/// Model.proto `FunctionDescription`.
public struct CoreMLFunctionDescription: Sendable {
    public var name: String
    public var inputs: [CoreMLFeature]
    public var outputs: [CoreMLFeature]
    public var states: [CoreMLFeature]

    public init(name: String, inputs: [CoreMLFeature], outputs: [CoreMLFeature], states: [CoreMLFeature]) {
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.states = states
    }

    public func encode(into w: inout ProtobufWriter) {
        w.string(1, name)  // FunctionDescription.name = 1
        for f in inputs { w.message(2) { f.encode(into: &$0) } }  // FunctionDescription.input = 2
        for f in outputs { w.message(3) { f.encode(into: &$0) } }  // FunctionDescription.output = 3
        for f in states { w.message(6) { f.encode(into: &$0) } }  // FunctionDescription.state = 6
    }
}

/// Model.proto `Model` holding an ML Program with several functions.
public struct CoreMLModel: Sendable {
    public var specificationVersion: Int
    public var functions: [CoreMLFunctionDescription]
    public var defaultFunctionName: String
    public var userDefined: [(key: String, value: String)]
    public var program: MILProgram

    public init(
        specificationVersion: Int, functions: [CoreMLFunctionDescription], defaultFunctionName: String,
        userDefined: [(key: String, value: String)], program: MILProgram
    ) {
        self.specificationVersion = specificationVersion
        self.functions = functions
        self.defaultFunctionName = defaultFunctionName
        self.userDefined = userDefined
        self.program = program
    }

    public func serialized() -> [UInt8] {
        var w = ProtobufWriter()
        w.int(1, Int64(specificationVersion))  // Model.specificationVersion = 1
        w.message(2) { d in  // Model.description = 2
            for f in functions { d.message(20) { f.encode(into: &$0) } }  // ModelDescription.functions = 20
            d.string(21, defaultFunctionName)  // ModelDescription.defaultFunctionName = 21
            d.message(100) { m in  // ModelDescription.metadata = 100
                for (k, v) in userDefined { m.mapEntry(100, key: k, value: v) }  // Metadata.userDefined = 100
            }
        }
        w.message(502) { program.encode(into: &$0) }  // Model.mlProgram = 502
        return w.bytes
    }
}

/// Little-endian bytes of 16-bit values (fp16 bit patterns).
public func littleEndianBytes(_ values: [UInt16]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: values.count * 2)
    for (i, v) in values.enumerated() {
        out[2 * i] = UInt8(v & 0xFF)
        out[2 * i + 1] = UInt8(v >> 8)
    }
    return out
}
