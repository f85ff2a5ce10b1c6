/// Translates the functions of an `ANEProgram` into one MIL program (opset CoreML8, iOS 18), op by op
/// as coremltools defines each op (coremltools/converters/mil/mil/ops/defs), with every parameter an
/// explicit const. Constants of 10 or more elements go to weight.bin, once per name however many
/// functions use them; conv weights and the embedding table are compressed as `format` asks.
final class MILTranslator {
    static let opset = "CoreML8"
    static let weightFile = "@model_path/weights/weight.bin"
    /// Fewer elements stay inline in the protobuf (coremltools' `should_use_weight_file` threshold).
    static let inlineLimit = 10
    /// int8-blockwise: input channels per fp16 scale.
    static let int8Block = 32

    let blobs: MILBlobWriter
    let format: ANEWeightFormat
    /// LUT formats: output channels per table (at most; the largest divisor of the rows up to it).
    let lutGroup: Int
    let progress: (String) -> Void
    /// Compression error over every compressed weight so far.
    private(set) var error = QuantizationError()
    private(set) var compressedCount = 0
    private var shared: [String: SharedConstant] = [:]
    private var reportedMegabytes = 0

    /// A constant as written for its first function; later functions must hold the same values.
    private struct SharedConstant {
        let function: String
        let shape: [Int]
        let values: ANEConstant
        /// `const`, or the constexpr op that rebuilds it.
        let type: String
        let inputs: [(name: String, bindings: [MILBinding])]
        let val: MILValue?
    }

    init(blobs: MILBlobWriter, format: ANEWeightFormat, lutGroup: Int = ANEWeightFormat.defaultLUTGroup, progress: @escaping (String) -> Void) {
        self.blobs = blobs
        self.format = format
        self.lutGroup = lutGroup
        self.progress = progress
    }

    /// The MIL function and its Core ML description.
    func translate(_ function: ANEProgram.Function) throws -> (MILFunction, CoreMLFunctionDescription) {
        var emitter = try FunctionEmitter(function, translator: self)
        try emitter.emitOps()
        return emitter.finish()
    }

    // MARK: Constants

    /// The const (or constexpr) op producing constant `id` of `graph`, named `variable`.
    fileprivate func constantOp(_ id: Int, _ graph: ANEGraph, function: String, variable: String, rowAxis: Int?) throws -> MILOperation {
        let tensor = graph.tensors[id]
        guard let values = graph.constants[id] else { throw ANELMError("ANE graph: const \(tensor.name) has no values") }
        let c: SharedConstant
        if let existing = shared[tensor.name] {
            guard existing.shape == tensor.shape, existing.values == values else {
                throw ANELMError(
                    "constant '\(tensor.name)' differs between functions '\(existing.function)' and '\(function)'; shared constants must hold the same values")
            }
            c = existing
        } else {
            c = try write(tensor, values, function: function, rowAxis: rowAxis)
            shared[tensor.name] = c
        }
        var op = MILOperation(type: c.type, inputs: c.inputs, outputs: [(variable, .tensor(Self.type(of: tensor)))], attributes: [("name", .string(variable))])
        if let val = c.val { op.attributes.append(("val", val)) }
        return op
    }

    private func write(_ tensor: ANETensor, _ values: ANEConstant, function: String, rowAxis: Int?) throws -> SharedConstant {
        // A weight is a (rows, cols) matrix inside its rank-4 shape: rows are output channels (a conv's
        // axis 0) or table entries (a gather's axis), cols the one other axis that is not 1. int8 blocks run
        // along the cols, LUTs are per group of rows.
        let shape = tensor.shape
        if let rowAxis, format != .fp16, case .fp16(let bits) = values, shape.count == 4,
            let colAxis = (0..<4).first(where: { $0 != rowAxis && shape[$0] > 1 }),
            (0..<4).allSatisfy({ $0 == rowAxis || $0 == colAxis || shape[$0] == 1 })
        {
            let rows = shape[rowAxis]
            let cols = shape[colAxis]
            let layout = MatrixLayout(shape: shape, rowAxis: rowAxis, colAxis: colAxis)
            let matrix = layout.matrix(bits)
            let source = floats(fromFP16: matrix)
            compressedCount += 1
            switch format {
            case .int8, .int8Blockwise:
                // Per output channel is one block spanning every input channel.
                let block = format == .int8 ? cols : divisor(of: cols, atMost: Self.int8Block)
                let q = BlockwiseInt8(fp16: matrix, rows: rows, cols: cols, block: block)
                error.add(source, q.dequantized())
                var scaleShape = shape
                scaleShape[colAxis] = cols / block
                let scales = MatrixLayout(shape: scaleShape, rowAxis: rowAxis, colAxis: colAxis).tensor(q.scales)
                let data = try value(MILTensorType(dataType: .int8, shape: shape), layout.tensor(q.data).map { UInt8(bitPattern: $0) }, elements: q.data.count)
                let scale = try value(MILTensorType(dataType: .float16, shape: scaleShape), littleEndianBytes(scales), elements: scales.count)
                return SharedConstant(
                    function: function, shape: shape, values: values, type: "constexpr_blockwise_shift_scale",
                    inputs: [("data", [.value(data)]), ("scale", [.value(scale)])], val: nil)
            case .lut4, .lut6, .lut8:
                let bitsPerIndex = format.lutBits ?? 8
                let group = divisor(of: rows, atMost: lutGroup)
                let p = Palettized(fp16: matrix, rows: rows, cols: cols, bits: bitsPerIndex, groupRows: group)
                error.add(source, p.dequantized())
                let indexType: MILDataType = bitsPerIndex == 4 ? .uint4 : bitsPerIndex == 6 ? .uint6 : .uint8
                let indices = try value(
                    MILTensorType(dataType: indexType, shape: shape),
                    packSubByte(layout.tensor(p.indices), bits: bitsPerIndex), elements: p.indices.count)
                // lut: rank = indices' rank + 2: the number of tables along each axis (rows / group along the
                // rows' axis), then 2^bits entries of vector size 1.
                let lutShape = (0..<4).map { $0 == rowAxis ? rows / group : 1 } + [1 << bitsPerIndex, 1]
                let lut = try value(MILTensorType(dataType: .float16, shape: lutShape), littleEndianBytes(p.lut), elements: p.lut.count)
                return SharedConstant(
                    function: function, shape: shape, values: values, type: "constexpr_lut_to_dense",
                    inputs: [("indices", [.value(indices)]), ("lut", [.value(lut)])], val: nil)
            case .fp16: break
            }
        }
        let val: MILValue
        switch values {
        case .fp16(let bits): val = try value(Self.type(of: tensor), littleEndianBytes(bits), elements: bits.count)
        case .int32(let v):
            if v.count >= Self.inlineLimit {
                var bytes = [UInt8](repeating: 0, count: v.count * 4)
                for (i, x) in v.enumerated() { MILBlobWriter.put(x, at: 4 * i, in: &bytes) }
                val = MILValue(type: Self.type(of: tensor), storage: .blob(file: Self.weightFile, offset: try append(.int32, bytes, elements: v.count)))
            } else {
                val = MILValue(type: Self.type(of: tensor), storage: .ints(v))
            }
        }
        return SharedConstant(function: function, shape: tensor.shape, values: values, type: "const", inputs: [], val: val)
    }

    /// A value of raw little-endian bytes: a blob in weight.bin when large, else inline.
    private func value(_ type: MILTensorType, _ bytes: [UInt8], elements: Int) throws -> MILValue {
        guard elements >= Self.inlineLimit else { return MILValue(type: type, storage: .bytes(bytes)) }
        return MILValue(type: type, storage: .blob(file: Self.weightFile, offset: try append(type.dataType, bytes, elements: elements)))
    }

    private func append(_ type: MILDataType, _ bytes: [UInt8], elements: Int) throws -> UInt64 {
        let offset = try blobs.append(type, bytes, elements: elements)
        let megabytes = Int(blobs.size >> 20)
        if megabytes >= reportedMegabytes + 64 {
            reportedMegabytes = megabytes
            progress("weight.bin: \(megabytes) MB")
        }
        return offset
    }

    static func type(of tensor: ANETensor) -> MILTensorType {
        MILTensorType(dataType: dataType(tensor.dtype), shape: tensor.shape)
    }

    static func dataType(_ t: ANEDataType) -> MILDataType {
        switch t {
        case .fp16: return .float16
        case .int32: return .int32
        }
    }

    static func arrayType(_ t: ANEDataType) -> CoreMLArrayDataType {
        switch t {
        case .fp16: return .float16
        case .int32: return .int32
        }
    }

    /// The Core ML name of graph output `name`: MIL names are SSA, so an output named like an input
    /// (decode's `token`, the argmax fed back next step) is `next_<name>`.
    static func outputFeatureName(_ name: String, inputs: [String: Int]) -> String {
        inputs[name] == nil ? name : "next_" + name
    }
}

/// A (rows, cols) matrix held in a rank-4 tensor whose other axes are 1: element (r, c) sits at
/// r·stride(rowAxis) + c·stride(colAxis), so a (1, C, 1, V) table is the transpose of its (V, C) matrix.
struct MatrixLayout {
    let rows: Int, cols: Int, rowStride: Int, colStride: Int

    init(shape: [Int], rowAxis: Int, colAxis: Int) {
        func stride(_ axis: Int) -> Int { shape[(axis + 1)...].reduce(1, *) }
        rows = shape[rowAxis]
        cols = shape[colAxis]
        rowStride = stride(rowAxis)
        colStride = stride(colAxis)
    }

    /// The tensor's values as the row-major matrix.
    func matrix<T>(_ tensor: [T]) -> [T] {
        if colStride == 1 { return tensor }
        return (0..<(rows * cols)).map { tensor[($0 / cols) * rowStride + ($0 % cols) * colStride] }
    }

    /// The row-major matrix's values in the tensor's layout.
    func tensor<T>(_ matrix: [T]) -> [T] {
        if colStride == 1 { return matrix }
        var out = matrix
        for i in matrix.indices { out[(i / cols) * rowStride + (i % cols) * colStride] = matrix[i] }
        return out
    }
}

/// Unique MIL identifiers ([A-Za-z_][A-Za-z0-9_@]*, MIL.proto) within one function.
struct MILNames {
    private var used = Set<String>()

    static func sanitized(_ name: String) -> String {
        var s = String(
            name.unicodeScalars.map { c -> Character in
                c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c == "@") ? Character(c) : "_"
            })
        if s.isEmpty || s.first!.isNumber || s.first == "@" { s = "_" + s }
        return s
    }

    /// `wanted` (sanitized), or with the first free `_<n>` suffix.
    mutating func claim(_ wanted: String) -> String {
        let base = Self.sanitized(wanted)
        var name = base
        var n = 1
        while used.contains(name) {
            name = "\(base)_\(n)"
            n += 1
        }
        used.insert(name)
        return name
    }

    /// Exactly `name`, or an error: inputs, outputs and states are part of the model's interface.
    mutating func claimExactly(_ name: String, _ what: String) throws -> String {
        guard Self.sanitized(name) == name, !used.contains(name) else {
            throw ANELMError("\(what) '\(name)' is not a valid MIL name or is used twice")
        }
        used.insert(name)
        return name
    }
}

/// One function's ops, in graph order.
private struct FunctionEmitter {
    let function: ANEProgram.Function
    let translator: MILTranslator
    var graph: ANEGraph { function.graph }
    var names = MILNames()
    var ops: [MILOperation] = []
    /// MIL variable of each graph tensor, once produced (or an input).
    var variables: [Int: String] = [:]
    /// Reshaped views already emitted, by tensor id and shape.
    var views: [String: String] = [:]
    let inputs: [(name: String, id: Int)], outputs: [(feature: String, id: Int)]
    /// Constants to compress (conv weights, constant gather tables) and the axis of their rows.
    let compressible: [Int: Int]

    init(_ function: ANEProgram.Function, translator: MILTranslator) throws {
        self.function = function
        self.translator = translator
        let graph = function.graph
        inputs = graph.inputs.map { ($0.key, $0.value) }.sorted { $0.id < $1.id }
        outputs = graph.outputs.map { (MILTranslator.outputFeatureName($0.key, inputs: graph.inputs), $0.value) }.sorted { $0.id < $1.id }
        // Compressed: conv weights (rows: output channels, axis 0) and constant gather tables (rows: the entries).
        var weights: [Int: Int] = [:]
        for op in graph.ops {
            switch op.kind {
            case .conv where op.inputs.count > 1: weights[op.inputs[1]] = 0
            case .gather where op.inputs.count > 1 && graph.constants[op.inputs[0]] != nil: weights[op.inputs[0]] = op.axis
            default: break
            }
        }
        compressible = weights
        for i in inputs { variables[i.id] = try names.claimExactly(i.name, "input") }
        for s in graph.states { _ = try names.claimExactly(s.name, "state") }
        for o in outputs {
            guard variables[o.id] == nil else { throw ANELMError("function \(function.name): output \(o.feature) is also an input or another output") }
            variables[o.id] = try names.claimExactly(o.feature, "output")
        }
    }

    mutating func finish() -> (MILFunction, CoreMLFunctionDescription) {
        let tensors = graph.tensors
        var functionInputs: [(name: String, type: MILValueType)] = inputs.map { ($0.name, .tensor(MILTranslator.type(of: tensors[$0.id]))) }
        functionInputs += graph.states.map { ($0.name, .state(MILTensorType(dataType: .float16, shape: $0.shape))) }
        let description = CoreMLFunctionDescription(
            name: function.name,
            inputs: inputs.map { CoreMLFeature(name: $0.name, dataType: MILTranslator.arrayType(tensors[$0.id].dtype), shape: tensors[$0.id].shape) },
            outputs: outputs.map { CoreMLFeature(name: $0.feature, dataType: MILTranslator.arrayType(tensors[$0.id].dtype), shape: tensors[$0.id].shape) },
            states: graph.states.map { CoreMLFeature(name: $0.name, dataType: .float16, shape: $0.shape, isState: true) })
        return (MILFunction(inputs: functionInputs, opset: MILTranslator.opset, outputs: outputs.map(\.feature), operations: ops), description)
    }

    // MARK: Helpers

    func input(_ op: ANEOp, _ i: Int) throws -> String {
        guard i < op.inputs.count, let v = variables[op.inputs[i]] else {
            throw ANELMError("ANE graph (\(function.name)): \(op.kind.rawValue) reads a tensor before it is computed")
        }
        return v
    }

    mutating func outputTensor(_ op: ANEOp) throws -> (ANETensor, String) {
        guard let id = op.output else { throw ANELMError("ANE graph (\(function.name)): \(op.kind.rawValue) has no output") }
        if let v = variables[id] { return (graph.tensors[id], v) }
        let v = names.claim(graph.tensors[id].name)
        variables[id] = v
        return (graph.tensors[id], v)
    }

    /// A const op holding one parameter of op `owner`, bound by name.
    mutating func parameter(_ owner: String, _ key: String, _ value: MILValue) -> (String, [MILBinding]) {
        let name = names.claim(owner + "_" + key)
        ops.append(MILOperation(type: "const", outputs: [(name, .tensor(value.type))], attributes: [("name", .string(name)), ("val", value)]))
        return (key, [.name(name)])
    }

    mutating func emit(_ type: String, _ variable: String, _ outType: MILTensorType, _ inputs: [(String, [MILBinding])]) {
        ops.append(MILOperation(type: type, inputs: inputs, outputs: [(variable, .tensor(outType))], attributes: [("name", .string(variable))]))
    }

    /// Tensor `id` reshaped to `shape` (a view: same element order), emitted once per function.
    mutating func view(_ id: Int, _ shape: [Int]) throws -> String {
        let t = graph.tensors[id]
        guard let v = variables[id] else { throw ANELMError("ANE graph (\(function.name)): \(t.name) is used before it is computed") }
        if t.shape == shape { return v }
        let key = "\(id):\(shape)"
        if let existing = views[key] { return existing }
        let name = names.claim(v + "_as_" + shape.map(String.init).joined(separator: "x"))
        let s = parameter(name, "shape", .int32s(shape.map(Int32.init)))
        emit("reshape", name, MILTensorType(dataType: MILTranslator.dataType(t.dtype), shape: shape), [("x", [.name(v)]), s])
        views[key] = name
        return name
    }

    // MARK: Ops

    mutating func emitOps() throws {
        for op in graph.ops {
            switch op.kind {
            case .const_:
                let (t, v) = try outputTensor(op)
                ops.append(try translator.constantOp(t.id, graph, function: function.name, variable: v, rowAxis: compressible[t.id]))
            case .readState:
                guard graph.states.indices.contains(op.state) else { throw ANELMError("ANE graph (\(function.name)): read_state of unknown state \(op.state)") }
                let (t, v) = try outputTensor(op)
                emit("read_state", v, MILTranslator.type(of: t), [("input", [.name(graph.states[op.state].name)])])
            case .writeState:
                // iOS 18 write_state(input: state, data: value) has no output (coremltools' coreml_update_state lowers to it).
                guard graph.states.indices.contains(op.state) else {
                    throw ANELMError("ANE graph (\(function.name)): write_state of unknown state \(op.state)")
                }
                let state = graph.states[op.state].name
                let name = names.claim(state + "_write")
                ops.append(
                    MILOperation(
                        type: "write_state", inputs: [("input", [.name(state)]), ("data", [.name(try input(op, 0))])], attributes: [("name", .string(name))]))
            case .gather:
                // MIL gather puts indices.shape in place of `axis`; the IR's indices (1, 1, 1, S) select S slices, so flatten them to (S).
                let (t, v) = try outputTensor(op)
                guard op.inputs.count == 2 else { throw ANELMError("ANE graph (\(function.name)): gather needs a table and indices") }
                let indices = try view(op.inputs[1], [graph.tensors[op.inputs[1]].count])
                emit(
                    "gather", v, MILTranslator.type(of: t),
                    [
                        ("x", [.name(try input(op, 0))]), ("indices", [.name(indices)]),
                        parameter(v, "axis", .int32(Int32(op.axis))), parameter(v, "batch_dims", .int32(0)), parameter(v, "validate_indices", .bool(false)),
                    ])
            case .conv:
                let (t, v) = try outputTensor(op)
                var inputs: [(String, [MILBinding])] = [("x", [.name(try input(op, 0))]), ("weight", [.name(try input(op, 1))])]
                if op.inputs.count > 2 { inputs.append(("bias", [.name(try input(op, 2))])) }
                inputs += [
                    parameter(v, "strides", .int32s([1, 1])), parameter(v, "pad_type", .string("valid")), parameter(v, "pad", .int32s([0, 0, 0, 0])),
                    parameter(v, "dilations", .int32s([1, 1])), parameter(v, "groups", .int32(1)),
                ]
                emit("conv", v, MILTranslator.type(of: t), inputs)
            case .mul, .add, .sub, .maximum, .minimum:
                let (t, v) = try outputTensor(op)
                emit(op.kind.rawValue, v, MILTranslator.type(of: t), [("x", [.name(try input(op, 0))]), ("y", [.name(try input(op, 1))])])
            case .gatherAlongAxis:
                let (t, v) = try outputTensor(op)
                emit(
                    "gather_along_axis", v, MILTranslator.type(of: t),
                    [
                        ("x", [.name(try input(op, 0))]), ("indices", [.name(try input(op, 1))]),
                        parameter(v, "axis", .int32(Int32(op.axis))), parameter(v, "validate_indices", .bool(false)),
                    ])
            case .gelu:
                let (t, v) = try outputTensor(op)
                guard ["EXACT", "TANH_APPROXIMATION"].contains(op.mode) else { throw ANELMError("ANE graph (\(function.name)): gelu mode '\(op.mode)'") }
                emit("gelu", v, MILTranslator.type(of: t), [("x", [.name(try input(op, 0))]), parameter(v, "mode", .string(op.mode))])
            case .abs, .square, .exp, .softplus, .sigmoid, .tanh:
                let (t, v) = try outputTensor(op)
                emit(op.kind.rawValue, v, MILTranslator.type(of: t), [("x", [.name(try input(op, 0))])])
            case .inverse, .rsqrt:
                // epsilon 0: the IR's 1/x and 1/√x are exact (the lowering adds its own eps where one is needed);
                // MIL's defaults (1e-4, 1e-12) would change 1/max|x| in RMSNorm.
                let (t, v) = try outputTensor(op)
                emit(op.kind.rawValue, v, MILTranslator.type(of: t), [("x", [.name(try input(op, 0))]), parameter(v, "epsilon", .fp16([0], shape: []))])
            case .reduceMean, .reduceMax:
                let (t, v) = try outputTensor(op)
                emit(
                    op.kind.rawValue, v, MILTranslator.type(of: t),
                    [("x", [.name(try input(op, 0))]), parameter(v, "axes", .int32s([Int32(op.axis)])), parameter(v, "keep_dims", .bool(true))])
            case .reduceArgmax:
                let (t, v) = try outputTensor(op)
                emit(
                    op.kind.rawValue, v, MILTranslator.type(of: t),
                    [
                        ("x", [.name(try input(op, 0))]), parameter(v, "axis", .int32(Int32(op.axis))),
                        parameter(v, "keep_dims", .bool(true)), parameter(v, "output_dtype", .string("int32")),
                    ])
            case .topk:
                // iOS 16+ topk: k = 1, descending, sorted, values then int32 indices.
                let (t, v) = try outputTensor(op)
                guard let indicesID = op.indicesOutput else { throw ANELMError("ANE graph (\(function.name)): topk without an indices output") }
                let indices = variables[indicesID] ?? names.claim(graph.tensors[indicesID].name)
                variables[indicesID] = indices
                let inputs = [
                    ("x", [MILBinding.name(try input(op, 0))]), parameter(v, "k", .int32(1)), parameter(v, "axis", .int32(Int32(op.axis))),
                    parameter(v, "ascending", .bool(false)), parameter(v, "sort", .bool(true)), parameter(v, "return_indices", .bool(true)),
                    parameter(v, "output_indices_dtype", .string("int32")),
                ]
                ops.append(
                    MILOperation(
                        type: "topk", inputs: inputs,
                        outputs: [(v, .tensor(MILTranslator.type(of: t))), (indices, .tensor(MILTranslator.type(of: graph.tensors[indicesID])))],
                        attributes: [("name", .string(v))]))
            case .softmax:
                let (t, v) = try outputTensor(op)
                emit("softmax", v, MILTranslator.type(of: t), [("x", [.name(try input(op, 0))]), parameter(v, "axis", .int32(Int32(op.axis)))])
            case .matmul:
                try emitMatmul(op)
            case .sliceByIndex:
                let (t, v) = try outputTensor(op)
                let shape = graph.tensors[op.inputs[0]].shape
                var begin = [Int32](repeating: 0, count: shape.count)
                var end = shape.map(Int32.init)
                begin[op.axis] = Int32(op.begin)
                end[op.axis] = Int32(op.end)
                let none = [Bool](repeating: false, count: shape.count)
                emit(
                    "slice_by_index", v, MILTranslator.type(of: t),
                    [
                        ("x", [.name(try input(op, 0))]), parameter(v, "begin", .int32s(begin)), parameter(v, "end", .int32s(end)),
                        parameter(v, "stride", .int32s([Int32](repeating: 1, count: shape.count))), parameter(v, "begin_mask", .bools(none)),
                        parameter(v, "end_mask", .bools(none)), parameter(v, "squeeze_mask", .bools(none)),
                    ])
            case .concat:
                let (t, v) = try outputTensor(op)
                let values = try op.inputs.indices.map { MILBinding.name(try input(op, $0)) }
                emit(
                    "concat", v, MILTranslator.type(of: t),
                    [("values", values), parameter(v, "axis", .int32(Int32(op.axis))), parameter(v, "interleave", .bool(false))])
            }
        }
    }

    /// The IR multiplies the (C, S) matrices of (1, C, 1, S) tensors; MIL's matmul multiplies the last two
    /// dimensions. So each operand is viewed as (1, 1, C, S) (same element order), multiplied with the
    /// transposes as flags, and the (1, 1, M, N) product viewed back as (1, M, 1, N).
    mutating func emitMatmul(_ op: ANEOp) throws {
        let (t, v) = try outputTensor(op)
        guard op.inputs.count == 2 else { throw ANELMError("ANE graph (\(function.name)): matmul needs two inputs") }
        let x = graph.tensors[op.inputs[0]]
        let y = graph.tensors[op.inputs[1]]
        let xv = try view(x.id, [1, 1, x.shape[1], x.shape[3]])
        let yv = try view(y.id, [1, 1, y.shape[1], y.shape[3]])
        let m = op.transposeX ? x.shape[3] : x.shape[1]
        let n = op.transposeY ? y.shape[1] : y.shape[3]
        let product = MILTensorType(dataType: .float16, shape: [1, 1, m, n])
        let productName = product.shape == t.shape ? v : names.claim(v + "_matrix")
        emit(
            "matmul", productName, product,
            [
                ("x", [.name(xv)]), ("y", [.name(yv)]),
                parameter(productName, "transpose_x", .bool(op.transposeX)), parameter(productName, "transpose_y", .bool(op.transposeY)),
            ])
        guard productName != v else { return }
        emit("reshape", v, MILTranslator.type(of: t), [("x", [.name(productName)]), parameter(v, "shape", .int32s(t.shape.map(Int32.init)))])
    }
}
