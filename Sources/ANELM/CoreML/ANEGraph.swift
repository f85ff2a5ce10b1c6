import CANELMKernels

// A small static-shape graph IR shaped for the Apple Neural Engine: every activation is a rank-4
// channels-first tensor (1, C, 1, S), every op one of a fixed set named as Core ML's MIL names them,
// and every shape known when the graph is built. The CPU interpreter (`ANEExecutor`) runs it with fp16
// rounding after each op; the Core ML export (`Export/MILTranslator`) translates it op for op into a MIL program.

/// Element type of a graph tensor.
public enum ANEDataType: String, Sendable {
    case fp16
    /// Token ids and argmax results (stored exactly; never rounded).
    case int32
}

/// The ops the IR knows, by their MIL names (iOS 15+ op set, states iOS 18). Attributes map to MIL
/// parameters: `axis`; reductions keep the reduced axis (keep_dims = true); `matmul`'s transpose_x/y;
/// `slice_by_index` begin/end along `axis`; `concat` along `axis` (interleave = false); `gelu`'s `mode`;
/// `gather` takes rank-1 indices and `gather_along_axis` indices of x's rank, both int32; `topk` is k = 1,
/// descending, with two results (values, and int32 indices in `indicesOutput`).
public enum ANEOpKind: String, Sendable, CaseIterable {
    case const_ = "const"
    case gather
    case gatherAlongAxis = "gather_along_axis"
    case conv, mul, add, sub, maximum, minimum, abs, inverse, rsqrt, square
    case exp, softplus, sigmoid, tanh, gelu
    case reduceMean = "reduce_mean"
    case reduceMax = "reduce_max"
    case reduceArgmax = "reduce_argmax"
    case softmax, matmul
    case sliceByIndex = "slice_by_index"
    case concat, topk
    case readState = "read_state"
    case writeState = "write_state"
}

/// A tensor of the graph: its id (index into `ANEGraph.tensors`), static shape and type.
public struct ANETensor: Sendable, Hashable {
    public let id: Int
    public let name: String
    public let shape: [Int]
    public let dtype: ANEDataType
    public var count: Int { shape.reduce(1, *) }
}

/// One op: inputs and output by tensor id, plus the attributes its kind uses.
public struct ANEOp: Sendable {
    public let kind: ANEOpKind
    public let inputs: [Int]
    /// nil for `write_state`, which produces no tensor.
    public let output: Int?
    public var axis = 0
    public var begin = 0, end = 0
    public var transposeX = false, transposeY = false
    /// `gelu`'s MIL mode: "TANH_APPROXIMATION" or "EXACT".
    public var mode = ""
    /// The state a `read_state`/`write_state` op reads or writes.
    public var state = 0
    /// `topk`'s second result, the int32 indices (nil for every other op).
    public var indicesOutput: Int?
}

/// Values of a `const` tensor: fp16 bit patterns or int32.
public enum ANEConstant: Sendable {
    case fp16([UInt16])
    case int32([Int32])
}

/// A persistent tensor kept across calls (the KV cache), as Core ML's stateful models have them.
public struct ANEState: Sendable {
    public let name: String
    public let shape: [Int]
}

/// A built graph: tensors, ops in execution order, named inputs/outputs, states and constants.
public struct ANEGraph: Sendable {
    public let tensors: [ANETensor]
    public let ops: [ANEOp]
    public let inputs: [String: Int]
    public let outputs: [String: Int]
    public let states: [ANEState]
    public let constants: [Int: ANEConstant]
    /// Free-form facts a lowering records (vocabulary size, context length, output chunks).
    public let metadata: [String: Int]
}

/// Builds an `ANEGraph`, inferring and checking every output shape as ops are added.
public final class ANEGraphBuilder {
    private(set) var tensors: [ANETensor] = []
    private(set) var ops: [ANEOp] = []
    private var inputs: [String: Int] = [:]
    private var outputs: [String: Int] = [:]
    private var states: [ANEState] = []
    private var constants: [Int: ANEConstant] = [:]
    public var metadata: [String: Int] = [:]

    public init() {}

    public func build() -> ANEGraph {
        ANEGraph(tensors: tensors, ops: ops, inputs: inputs, outputs: outputs, states: states, constants: constants, metadata: metadata)
    }

    private func tensor(_ name: String, _ shape: [Int], _ dtype: ANEDataType = .fp16) -> ANETensor {
        let t = ANETensor(id: tensors.count, name: name, shape: shape, dtype: dtype)
        tensors.append(t)
        return t
    }

    private func add(
        _ kind: ANEOpKind, _ inputs: [ANETensor], _ shape: [Int], _ dtype: ANEDataType = .fp16, name: String? = nil, configure: (inout ANEOp) -> Void = { _ in }
    ) -> ANETensor {
        let out = tensor(name ?? "\(kind.rawValue)_\(tensors.count)", shape, dtype)
        var op = ANEOp(kind: kind, inputs: inputs.map(\.id), output: out.id)
        configure(&op)
        ops.append(op)
        return out
    }

    private static func check(_ condition: Bool, _ message: @autoclosure () -> String) throws {
        if !condition { throw ANELMError("ANE graph: " + message()) }
    }

    // MARK: Sources

    public func input(_ name: String, shape: [Int], dtype: ANEDataType = .fp16) -> ANETensor {
        let t = tensor(name, shape, dtype)
        inputs[name] = t.id
        return t
    }

    /// Names `t` as the graph output `name`; the tensor takes that name, so MIL var names are the
    /// outputs' names. Every tensor name of a graph is unique (inputs, constants, outputs, op results).
    public func output(_ name: String, _ t: ANETensor) throws {
        try Self.check(outputs[name] == nil && !tensors.contains { $0.name == name && $0.id != t.id }, "output name \(name) is already used")
        tensors[t.id] = ANETensor(id: t.id, name: name, shape: t.shape, dtype: t.dtype)
        outputs[name] = t.id
    }

    /// An fp16 constant; `values` are rounded to fp16 here.
    public func constant(_ name: String, _ values: [Float], shape: [Int]) throws -> ANETensor {
        try Self.check(values.count == shape.reduce(1, *), "constant \(name) has \(values.count) values for shape \(shape)")
        var bits = [UInt16](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { v in bits.withUnsafeMutableBufferPointer { anelm_convert_f32_to_f16(v.baseAddress, $0.baseAddress, values.count) } }
        return constant(name, fp16Bits: bits, shape: shape)
    }

    /// An fp16 constant from bit patterns (large weights, converted once).
    public func constant(_ name: String, fp16Bits: [UInt16], shape: [Int]) -> ANETensor {
        let t = add(.const_, [], shape, name: name)
        constants[t.id] = .fp16(fp16Bits)
        return t
    }

    public func constant(_ name: String, int32 values: [Int32], shape: [Int]) throws -> ANETensor {
        try Self.check(values.count == shape.reduce(1, *), "constant \(name) has \(values.count) values for shape \(shape)")
        let t = add(.const_, [], shape, .int32, name: name)
        constants[t.id] = .int32(values)
        return t
    }

    /// A state of `shape` and the `read_state` of it.
    public func readState(_ name: String, shape: [Int]) -> (state: Int, value: ANETensor) {
        states.append(ANEState(name: name, shape: shape))
        let index = states.count - 1
        return (index, add(.readState, [], shape, name: name + "_read") { $0.state = index })
    }

    public func writeState(_ state: Int, _ value: ANETensor) throws {
        try Self.check(state >= 0 && state < states.count && states[state].shape == value.shape, "write_state of \(value.shape) into state \(state)")
        ops.append(ANEOp(kind: .writeState, inputs: [value.id], output: nil, state: state))
    }

    // MARK: Ops

    /// MIL `gather` along `axis` with rank-1 indices (S): the output is x's shape with S at `axis`
    /// (MIL's rule, x.shape[..<axis] + indices.shape + x.shape[axis+1...], for rank-1 indices).
    public func gather(_ x: ANETensor, indices: ANETensor, axis: Int) throws -> ANETensor {
        try Self.check(
            x.shape.count == 4 && (0..<4).contains(axis) && indices.dtype == .int32 && indices.shape.count == 1, "gather of \(x.shape) by \(indices.shape)")
        var shape = x.shape
        shape[axis] = indices.count
        return add(.gather, [x, indices], shape, x.dtype) { $0.axis = axis }
    }

    /// MIL `gather_along_axis`: indices of x's rank, equal to x's shape except along `axis`; the output
    /// has the indices' shape and takes x at the index along `axis`, the other coordinates kept.
    public func gatherAlongAxis(_ x: ANETensor, indices: ANETensor, axis: Int) throws -> ANETensor {
        try Self.check(
            x.shape.count == 4 && indices.shape.count == 4 && indices.dtype == .int32 && (0..<4).contains(axis)
                && (0..<4).allSatisfy { $0 == axis || x.shape[$0] == indices.shape[$0] }, "gather_along_axis of \(x.shape) by \(indices.shape)")
        return add(.gatherAlongAxis, [x, indices], indices.shape, x.dtype) { $0.axis = axis }
    }

    /// A 1×1 convolution: x (1, Cin, 1, S), weight (Cout, Cin, 1, 1), optional bias (Cout) → (1, Cout, 1, S).
    public func conv(_ x: ANETensor, weight: ANETensor, bias: ANETensor? = nil, name: String? = nil) throws -> ANETensor {
        try Self.check(
            x.shape.count == 4 && weight.shape.count == 4 && x.shape[1] == weight.shape[1] && x.shape[2] == 1 && weight.shape[2] == 1 && weight.shape[3] == 1,
            "conv of \(x.shape) with weight \(weight.shape)")
        if let bias { try Self.check(bias.count == weight.shape[0], "conv bias \(bias.shape) for \(weight.shape[0]) channels") }
        return add(.conv, [x, weight] + (bias.map { [$0] } ?? []), [1, weight.shape[0], 1, x.shape[3]], name: name)
    }

    public func mul(_ a: ANETensor, _ b: ANETensor) throws -> ANETensor { try binary(.mul, a, b) }
    public func add(_ a: ANETensor, _ b: ANETensor) throws -> ANETensor { try binary(.add, a, b) }
    public func sub(_ a: ANETensor, _ b: ANETensor) throws -> ANETensor { try binary(.sub, a, b) }
    /// Elementwise max(a, b), broadcast as `add`.
    public func maximum(_ a: ANETensor, _ b: ANETensor) throws -> ANETensor { try binary(.maximum, a, b) }
    public func minimum(_ a: ANETensor, _ b: ANETensor) throws -> ANETensor { try binary(.minimum, a, b) }

    private func binary(_ kind: ANEOpKind, _ a: ANETensor, _ b: ANETensor) throws -> ANETensor {
        try Self.check(a.shape.count == 4 && b.shape.count == 4 && a.dtype == b.dtype, "\(kind.rawValue) of \(a.shape) \(a.dtype) and \(b.shape) \(b.dtype)")
        var shape = [Int]()
        for (m, n) in zip(a.shape, b.shape) {
            try Self.check(m == n || m == 1 || n == 1, "\(kind.rawValue) cannot broadcast \(a.shape) with \(b.shape)")
            shape.append(max(m, n))
        }
        return add(kind, [a, b], shape, a.dtype)
    }

    public func abs(_ x: ANETensor) -> ANETensor { add(.abs, [x], x.shape) }
    /// `1 / x`.
    public func inverse(_ x: ANETensor) -> ANETensor { add(.inverse, [x], x.shape) }
    public func rsqrt(_ x: ANETensor) -> ANETensor { add(.rsqrt, [x], x.shape) }
    public func square(_ x: ANETensor) -> ANETensor { add(.square, [x], x.shape) }
    public func sigmoid(_ x: ANETensor) -> ANETensor { add(.sigmoid, [x], x.shape) }
    /// eˣ: the caller keeps x ≤ 11 (e¹¹ ≈ 59,874 < 65,504) so that the result is finite in fp16.
    public func exp(_ x: ANETensor) -> ANETensor { add(.exp, [x], x.shape) }
    /// log(1 + eˣ); −softplus(−x) is log(sigmoid(x)) without sigmoid's fp16 underflow.
    public func softplus(_ x: ANETensor) -> ANETensor { add(.softplus, [x], x.shape) }
    public func tanh(_ x: ANETensor) -> ANETensor { add(.tanh, [x], x.shape) }

    /// MIL `gelu`: `tanhApproximation` is PyTorch's gelu(approximate="tanh") (mode TANH_APPROXIMATION),
    /// otherwise the erf form (EXACT).
    public func gelu(_ x: ANETensor, tanhApproximation: Bool) -> ANETensor {
        add(.gelu, [x], x.shape) { $0.mode = tanhApproximation ? "TANH_APPROXIMATION" : "EXACT" }
    }

    public func reduceMean(_ x: ANETensor, axis: Int) throws -> ANETensor { try reduce(.reduceMean, x, axis, .fp16) }
    public func reduceMax(_ x: ANETensor, axis: Int) throws -> ANETensor { try reduce(.reduceMax, x, axis, .fp16) }
    public func reduceArgmax(_ x: ANETensor, axis: Int) throws -> ANETensor { try reduce(.reduceArgmax, x, axis, .int32) }

    private func reduce(_ kind: ANEOpKind, _ x: ANETensor, _ axis: Int, _ dtype: ANEDataType) throws -> ANETensor {
        try Self.check(x.shape.count == 4 && (0..<4).contains(axis), "\(kind.rawValue) of \(x.shape) along \(axis)")
        var shape = x.shape
        shape[axis] = 1
        return add(kind, [x], shape, dtype) { $0.axis = axis }
    }

    /// MIL `topk` with k = 1 (descending, sorted): the largest value along `axis` and its index (int32),
    /// the first one on a tie.
    public func top1(_ x: ANETensor, axis: Int) throws -> (value: ANETensor, index: ANETensor) {
        try Self.check(x.shape.count == 4 && (0..<4).contains(axis) && x.dtype == .fp16, "topk of \(x.shape) along \(axis)")
        var shape = x.shape
        shape[axis] = 1
        let index = tensor("topk_\(tensors.count)_index", shape, .int32)
        let value = add(.topk, [x], shape) {
            $0.axis = axis
            $0.indicesOutput = index.id
        }
        return (value, index)
    }

    public func softmax(_ x: ANETensor, axis: Int) throws -> ANETensor {
        try Self.check(x.shape.count == 4 && (0..<4).contains(axis), "softmax of \(x.shape) along \(axis)")
        return add(.softmax, [x], x.shape) { $0.axis = axis }
    }

    /// Matrix product of the (C, S) matrices of two channels-first tensors, each optionally transposed;
    /// the (M, N) result is the tensor (1, M, 1, N). The transposes are flags of the product, not ops.
    public func matmul(_ x: ANETensor, _ y: ANETensor, transposeX: Bool = false, transposeY: Bool = false) throws -> ANETensor {
        try Self.check(
            x.shape.count == 4 && y.shape.count == 4 && x.shape[0] == 1 && x.shape[2] == 1 && y.shape[0] == 1 && y.shape[2] == 1,
            "matmul of \(x.shape) and \(y.shape)")
        let (m, kx) = transposeX ? (x.shape[3], x.shape[1]) : (x.shape[1], x.shape[3])
        let (ky, n) = transposeY ? (y.shape[3], y.shape[1]) : (y.shape[1], y.shape[3])
        try Self.check(kx == ky, "matmul inner sizes \(kx) and \(ky) differ")
        return add(.matmul, [x, y], [1, m, 1, n]) {
            $0.transposeX = transposeX
            $0.transposeY = transposeY
        }
    }

    /// `x[begin..<end]` along `axis`.
    public func slice(_ x: ANETensor, axis: Int, begin: Int, end: Int) throws -> ANETensor {
        try Self.check(
            x.shape.count == 4 && (0..<4).contains(axis) && begin >= 0 && begin < end && end <= x.shape[axis],
            "slice \(begin)..<\(end) of \(x.shape) along \(axis)")
        var shape = x.shape
        shape[axis] = end - begin
        return add(.sliceByIndex, [x], shape, x.dtype) {
            $0.axis = axis
            $0.begin = begin
            $0.end = end
        }
    }

    public func concat(_ xs: [ANETensor], axis: Int) throws -> ANETensor {
        guard let first = xs.first else { throw ANELMError("ANE graph: concat of nothing") }
        var shape = first.shape
        for x in xs.dropFirst() {
            try Self.check(
                x.shape.count == 4 && x.dtype == first.dtype && (0..<4).allSatisfy { $0 == axis || x.shape[$0] == first.shape[$0] },
                "concat of \(first.shape) and \(x.shape) along \(axis)")
            shape[axis] += x.shape[axis]
        }
        return add(.concat, xs, shape, first.dtype) { $0.axis = axis }
    }
}
