import CANELMKernels
import Foundation

/// Runs a lowered program on the CPU as the Neural Engine would numerically: each op computes in f32
/// and its result is rounded to fp16 before any other op sees it; weights are fp16; the states persist
/// across calls and are shared by the program's functions, as Core ML's are.
public final class ANEExecutor {
    public let program: ANEProgram
    private let pool: ThreadPool
    /// Per function: fp16 constants as f32, except conv weights and gather tables (read as fp16 bits).
    private var constantValues: [String: [Int: [Float]]] = [:]
    private var states: [[Float]]
    /// Tokens run so far by `forward` (the next one's position).
    public private(set) var position = 0
    /// Called with every op's output after rounding (diagnostics: overflow checks, activation ranges).
    public var observe: ((ANETensor, [Float]) -> Void)?

    public init(program: ANEProgram, pool: ThreadPool? = nil) {
        self.program = program
        self.pool = pool ?? ThreadPool(threads: ThreadPool.physicalCoreCount)
        for function in program.functions {
            let graph = function.graph
            var keptAsBits = Set<Int>()
            for op in graph.ops where op.kind == .conv || op.kind == .gather { keptAsBits.insert(op.inputs[op.kind == .conv ? 1 : 0]) }
            var values: [Int: [Float]] = [:]
            for (id, constant) in graph.constants {
                switch constant {
                case .fp16(let bits):
                    if keptAsBits.contains(id) { continue }
                    var f = [Float](repeating: 0, count: bits.count)
                    bits.withUnsafeBufferPointer { b in f.withUnsafeMutableBufferPointer { anelm_convert_f16_to_f32(b.baseAddress, $0.baseAddress, bits.count) }
                    }
                    values[id] = f
                case .int32(let v): values[id] = v.map(Float.init)
                }
            }
            constantValues[function.name] = values
        }
        states = Self.zeroStates(program)
    }

    /// The program's states, zeroed: what a new sequence starts from (Core ML's `makeState()`).
    public func makeStates() -> [[Float]] { Self.zeroStates(program) }

    private static func zeroStates(_ program: ANEProgram) -> [[Float]] {
        (program.functions.first?.graph.states ?? []).map { [Float](repeating: 0, count: $0.shape.reduce(1, *)) }
    }

    /// An executor of one graph (its function is named "main").
    public convenience init(graph: ANEGraph, pool: ThreadPool? = nil) throws {
        self.init(program: try ANEProgram(functions: [.init(name: "main", graph: graph)], metadata: graph.metadata), pool: pool)
    }

    /// Zeroes every state (a new sequence).
    public func reset() {
        for i in states.indices { states[i] = [Float](repeating: 0, count: states[i].count) }
        position = 0
    }

    /// Runs `tokens` at the positions after those already run (prefill blocks, or decode for one token)
    /// and returns the last token's fp16 logits (as f32) and the graph's own argmax.
    public func forward(_ tokens: [Int]) throws -> (logits: [Float], token: Int) {
        let layout = try ANESequenceLayout(metadata: program.metadata)
        let result = try layout.forward(tokens, start: position) { function, inputs in try run(function.rawValue, inputs) }
        position += tokens.count
        return result
    }

    /// `x` rounded to the nearest fp16 value (ties to even), as f32.
    @inline(__always)
    public static func roundedToFP16(_ x: Float) -> Float {
        let magnitude = Swift.abs(x)
        guard magnitude.isFinite else { return x }
        if magnitude >= 65520 { return x < 0 ? -.infinity : .infinity }
        if magnitude < 6.103515625e-05 {  // fp16 subnormals: a fixed step of 2^-24
            return (x * 16_777_216).rounded(.toNearestOrEven) / 16_777_216
        }
        let bits = x.bitPattern
        let rounded = (bits &+ 0x0FFF &+ ((bits >> 13) & 1)) & 0xFFFF_E000
        return Float(bitPattern: rounded)
    }

    /// Runs the program's first function once on named inputs (single-graph executors).
    public func run(_ inputs: [String: [Float]]) throws -> [String: [Float]] {
        try run(program.functions.first?.name ?? "", inputs)
    }

    /// Runs the function `name` once on named inputs; returns every named output (int32 values as whole floats).
    public func run(_ name: String, _ inputs: [String: [Float]]) throws -> [String: [Float]] {
        try run(name, inputs, states: &states)
    }

    /// Runs the function `name` once on named inputs with the given states (from `makeStates()`), which it
    /// reads and updates in place, as Core ML's `prediction(from:using:)` does with an `MLState`.
    public func run(_ name: String, _ inputs: [String: [Float]], states: inout [[Float]]) throws -> [String: [Float]] {
        guard let graph = program.function(name), let constantValues = constantValues[name] else {
            throw ANELMError("the ANE program has no function \(name)")
        }
        guard states.count == graph.states.count, zip(states, graph.states).allSatisfy({ $0.count == $1.shape.reduce(1, *) }) else {
            throw ANELMError("the states given to \(name) do not match its \(graph.states.count) declared state(s)")
        }
        var values = [[Float]?](repeating: nil, count: graph.tensors.count)
        for (name, id) in graph.inputs {
            guard let v = inputs[name], v.count == graph.tensors[id].count else {
                throw ANELMError("input \(name) needs \(graph.tensors[id].count) values")
            }
            values[id] = graph.tensors[id].dtype == .fp16 ? v.map(Self.roundedToFP16) : v
        }
        func value(_ id: Int) throws -> [Float] {
            if let v = values[id] ?? constantValues[id] { return v }
            throw ANELMError("ANE graph: tensor \(graph.tensors[id].name) is used before it is computed")
        }
        for op in graph.ops {
            let shapes = op.inputs.map { graph.tensors[$0].shape }
            var result: [Float]
            switch op.kind {
            case .const_: continue
            case .readState: result = states[op.state]
            case .writeState:
                states[op.state] = try value(op.inputs[0])
                continue
            case .gather: result = try gather(graph, op, shapes, source: values[op.inputs[0]] ?? constantValues[op.inputs[0]], try value(op.inputs[1]))
            case .gatherAlongAxis: result = try Self.gatherAlongAxis(try value(op.inputs[0]), shapes[0], try value(op.inputs[1]), shapes[1], op.axis)
            case .conv: result = try conv(graph, op, shapes, try value(op.inputs[0]), bias: op.inputs.count > 2 ? try value(op.inputs[2]) : nil)
            case .mul, .add, .sub, .maximum, .minimum: result = Self.broadcast(op.kind, try value(op.inputs[0]), shapes[0], try value(op.inputs[1]), shapes[1])
            case .abs: result = try value(op.inputs[0]).map { Swift.abs($0) }
            case .inverse: result = try value(op.inputs[0]).map { 1 / $0 }
            case .rsqrt: result = try value(op.inputs[0]).map { 1 / $0.squareRoot() }
            case .square: result = try value(op.inputs[0]).map { $0 * $0 }
            case .sigmoid: result = try value(op.inputs[0]).map { 1 / (1 + expf(-$0)) }
            case .exp: result = try value(op.inputs[0]).map { expf($0) }
            // log1p(eˣ) for x ≤ 20, x beyond (where eˣ would lose the 1 anyway): as torch's softplus.
            case .softplus: result = try value(op.inputs[0]).map { $0 > 20 ? $0 : log1pf(expf($0)) }
            case .tanh: result = try value(op.inputs[0]).map { tanhf($0) }
            case .gelu: result = try value(op.inputs[0]).map(op.mode == "EXACT" ? Self.geluExact : Self.geluTanh)
            case .reduceMean, .reduceMax, .reduceArgmax, .softmax: result = Self.alongAxis(op.kind, try value(op.inputs[0]), shapes[0], op.axis)
            case .topk:
                // k = 1: the max (an fp16 input's own value) and its first index.
                let x = try value(op.inputs[0])
                guard let indices = op.indicesOutput else { throw ANELMError("ANE graph: topk without an indices output") }
                values[indices] = Self.alongAxis(.reduceArgmax, x, shapes[0], op.axis)
                result = Self.alongAxis(.reduceMax, x, shapes[0], op.axis)
            case .matmul: result = matmul(try value(op.inputs[0]), shapes[0], try value(op.inputs[1]), shapes[1], op.transposeX, op.transposeY)
            case .sliceByIndex: result = Self.slice(try value(op.inputs[0]), shapes[0], op.axis, op.begin, op.end)
            case .concat: result = Self.concat(try op.inputs.map(value), shapes, op.axis)
            }
            guard let out = op.output else { continue }
            // State values were rounded when written; everything computed is rounded here.
            if graph.tensors[out].dtype == .fp16, op.kind != .readState {
                result.withUnsafeMutableBufferPointer { r in for i in r.indices { r[i] = Self.roundedToFP16(r[i]) } }
            }
            observe?(graph.tensors[out], result)
            values[out] = result
        }
        var outputs: [String: [Float]] = [:]
        for (name, id) in graph.outputs { outputs[name] = try value(id) }
        return outputs
    }

    // MARK: Ops

    private func fp16Bits(_ graph: ANEGraph, _ id: Int) throws -> [UInt16] {
        guard case .fp16(let bits)? = graph.constants[id] else { throw ANELMError("ANE graph: \(graph.tensors[id].name) must be an fp16 constant") }
        return bits
    }

    /// Sizes before, along and after `axis` of a rank-4 shape.
    private static func split(_ shape: [Int], _ axis: Int) -> (outer: Int, size: Int, inner: Int) {
        (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }

    /// MIL `gather` with rank-1 indices: slices of x along `axis`, in the indices' order.
    private func gather(_ graph: ANEGraph, _ op: ANEOp, _ shapes: [[Int]], source computed: [Float]?, _ indices: [Float]) throws -> [Float] {
        let (outer, size, inner) = Self.split(shapes[0], op.axis)
        let source: [Float]
        if let v = computed {
            source = v
        } else {
            // A large fp16 table (the embedding): convert only the selected slices.
            let bits = try fp16Bits(graph, op.inputs[0])
            var out = [Float](repeating: 0, count: outer * indices.count * inner)
            for o in 0..<outer {
                for (s, index) in indices.enumerated() {
                    let i = Int(index)
                    guard i >= 0, i < size else { throw ANELMError("gather index \(i) is outside 0..<\(size)") }
                    for k in 0..<inner { out[(o * indices.count + s) * inner + k] = anelm_f16_to_f32(bits[(o * size + i) * inner + k]) }
                }
            }
            return out
        }
        var out = [Float](repeating: 0, count: outer * indices.count * inner)
        for o in 0..<outer {
            for (s, index) in indices.enumerated() {
                let i = Int(index)
                guard i >= 0, i < size else { throw ANELMError("gather index \(i) is outside 0..<\(size)") }
                for k in 0..<inner { out[(o * indices.count + s) * inner + k] = source[(o * size + i) * inner + k] }
            }
        }
        return out
    }

    private func conv(_ graph: ANEGraph, _ op: ANEOp, _ shapes: [[Int]], _ x: [Float], bias: [Float]?) throws -> [Float] {
        let cin = shapes[0][1]
        let s = shapes[0][3]
        let cout = shapes[1][0]
        let weight = try fp16Bits(graph, op.inputs[1])
        // The kernel wants positions as rows: transpose (C, S) to (S, C) and back when S > 1.
        var rows = x
        if s > 1 { for c in 0..<cin { for p in 0..<s { rows[p * cin + c] = x[c * s + p] } } }
        var y = [Float](repeating: 0, count: cout * s)
        weight.withUnsafeBytes { w in
            rows.withUnsafeBufferPointer { xr in
                y.withUnsafeMutableBufferPointer { yr in
                    let wp = w.baseAddress
                    let xp = xr.baseAddress
                    let yp = yr.baseAddress
                    pool.parallelRanges(cout, minimum: max(1, 8192 / max(cin, 1))) { r in
                        anelm_matmul_rows(Int32(ANELM_F16), wp, cin * 2, cin, xp, nil, nil, s, yp, cout, r.lowerBound, r.upperBound)
                    }
                }
            }
        }
        if s > 1 {
            let t = y
            for p in 0..<s { for c in 0..<cout { y[c * s + p] = t[p * cout + c] } }
        }
        if let bias { for c in 0..<cout { for p in 0..<s { y[c * s + p] += bias[c] } } }
        return y
    }

    static func broadcast(_ kind: ANEOpKind, _ a: [Float], _ sa: [Int], _ b: [Float], _ sb: [Int]) -> [Float] {
        switch kind {
        case .mul: return broadcast(a, sa, b, sb) { $0 * $1 }
        case .add: return broadcast(a, sa, b, sb) { $0 + $1 }
        case .maximum: return broadcast(a, sa, b, sb) { Swift.max($0, $1) }
        case .minimum: return broadcast(a, sa, b, sb) { Swift.min($0, $1) }
        default: return broadcast(a, sa, b, sb) { $0 - $1 }
        }
    }

    /// `f` of a and b broadcast to their common rank-4 shape (a size-1 axis repeats).
    @inline(__always)
    static func broadcast(_ a: [Float], _ sa: [Int], _ b: [Float], _ sb: [Int], _ f: (Float, Float) -> Float) -> [Float] {
        let shape = zip(sa, sb).map { max($0, $1) }
        func strides(_ s: [Int]) -> [Int] {
            var st = [0, 0, 0, 0]
            var run = 1
            for d in (0..<4).reversed() {
                st[d] = s[d] == 1 ? 0 : run
                run *= s[d]
            }
            return st
        }
        let ta = strides(sa)
        let tb = strides(sb)
        let width = shape[3]
        var out = [Float](repeating: 0, count: shape.reduce(1, *))
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                out.withUnsafeMutableBufferPointer { op in
                    let pa = ap.baseAddress!
                    let pb = bp.baseAddress!
                    let po = op.baseAddress!
                    var i = 0
                    for d0 in 0..<shape[0] {
                        for d1 in 0..<shape[1] {
                            for d2 in 0..<shape[2] {
                                let ra = pa + d0 * ta[0] + d1 * ta[1] + d2 * ta[2]
                                let rb = pb + d0 * tb[0] + d1 * tb[1] + d2 * tb[2]
                                let sa3 = ta[3]
                                let sb3 = tb[3]
                                let row = po + i
                                for j in 0..<width { row[j] = f(ra[j * sa3], rb[j * sb3]) }
                                i += width
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    static func alongAxis(_ kind: ANEOpKind, _ x: [Float], _ shape: [Int], _ axis: Int) -> [Float] {
        let (outer, size, inner) = split(shape, axis)
        var out = [Float](repeating: 0, count: kind == .softmax ? x.count : outer * inner)
        for o in 0..<outer {
            for k in 0..<inner {
                let base = o * size * inner + k
                var best = -Float.infinity
                var bestIndex = 0
                var sum: Float = 0
                for j in 0..<size {
                    let v = x[base + j * inner]
                    if v > best {
                        best = v
                        bestIndex = j
                    }
                    sum += v
                }
                switch kind {
                case .reduceMean: out[o * inner + k] = sum / Float(size)
                case .reduceMax: out[o * inner + k] = best
                case .reduceArgmax: out[o * inner + k] = Float(bestIndex)
                default:
                    var total: Float = 0
                    for j in 0..<size {
                        let e = expf(x[base + j * inner] - best)
                        out[base + j * inner] = e
                        total += e
                    }
                    for j in 0..<size { out[base + j * inner] /= total }
                }
            }
        }
        return out
    }

    /// x (or xᵀ) · y (or yᵀ) of the (C, S) matrices, in f32: for wide results each output row is a sum
    /// of scaled rows of the right factor (axpy over contiguous rows), otherwise each entry a dot product
    /// of contiguous rows (the row kernel). No zero is skipped: 0·inf must stay NaN, as on the device.
    func matmul(_ x: [Float], _ sx: [Int], _ y: [Float], _ sy: [Int], _ tx: Bool, _ ty: Bool) -> [Float] {
        let m = tx ? sx[3] : sx[1]
        let k = tx ? sx[1] : sx[3]
        let n = ty ? sy[1] : sy[3]
        let left = tx ? Self.transposed(x, rows: sx[1], cols: sx[3]) : x  // m × k
        var out = [Float](repeating: 0, count: m * n)
        if n >= 16 {
            let right = ty ? Self.transposed(y, rows: sy[1], cols: sy[3]) : y  // k × n
            right.withUnsafeBufferPointer { rp in
                left.withUnsafeBufferPointer { lp in
                    out.withUnsafeMutableBufferPointer { o in
                        let r = rp.baseAddress!
                        let l = lp.baseAddress!
                        let op = o.baseAddress!
                        pool.parallelRanges(m, minimum: max(1, 65_536 / max(k * n, 1))) { rows in
                            for i in rows { for p in 0..<k { anelm_axpy(l[i * k + p], r + p * n, op + i * n, n) } }
                        }
                    }
                }
            }
            return out
        }
        let right = ty ? y : Self.transposed(y, rows: sy[1], cols: sy[3])  // n × k
        right.withUnsafeBytes { w in
            left.withUnsafeBufferPointer { l in
                out.withUnsafeMutableBufferPointer { o in
                    let wp = w.baseAddress
                    let lp = l.baseAddress
                    let op = o.baseAddress
                    pool.parallelRanges(n, minimum: max(1, 8192 / max(k * m, 1))) { r in
                        anelm_matmul_rows(Int32(ANELM_F32), wp, k * 4, k, lp, nil, nil, m, op, n, r.lowerBound, r.upperBound)
                    }
                }
            }
        }
        return out
    }

    static func transposed(_ x: [Float], rows: Int, cols: Int) -> [Float] {
        var t = [Float](repeating: 0, count: x.count)
        for r in 0..<rows { for c in 0..<cols { t[c * rows + r] = x[r * cols + c] } }
        return t
    }

    /// MIL `gather_along_axis`: out[i] = x[i with its `axis` coordinate replaced by indices[i]].
    static func gatherAlongAxis(_ x: [Float], _ sx: [Int], _ indices: [Float], _ si: [Int], _ axis: Int) throws -> [Float] {
        let (outer, size, inner) = split(sx, axis)
        let count = si[axis]
        var out = [Float](repeating: 0, count: indices.count)
        for o in 0..<outer {
            for j in 0..<count {
                for k in 0..<inner {
                    let at = (o * count + j) * inner + k
                    let i = Int(indices[at])
                    guard i >= 0, i < size else { throw ANELMError("gather_along_axis index \(i) is outside 0..<\(size)") }
                    out[at] = x[(o * size + i) * inner + k]
                }
            }
        }
        return out
    }

    /// PyTorch's gelu(approximate="tanh").
    static func geluTanh(_ x: Float) -> Float { 0.5 * x * (1 + tanhf(0.7978845608 * (x + 0.044715 * x * x * x))) }
    static func geluExact(_ x: Float) -> Float { 0.5 * x * (1 + erff(x * 0.70710678118)) }

    static func slice(_ x: [Float], _ shape: [Int], _ axis: Int, _ begin: Int, _ end: Int) -> [Float] {
        let (outer, size, inner) = split(shape, axis)
        var out = [Float]()
        out.reserveCapacity(outer * (end - begin) * inner)
        for o in 0..<outer { out += x[(o * size + begin) * inner..<(o * size + end) * inner] }
        return out
    }

    static func concat(_ xs: [[Float]], _ shapes: [[Int]], _ axis: Int) -> [Float] {
        let outer = shapes[0][..<axis].reduce(1, *)
        var out = [Float]()
        for o in 0..<outer {
            for (x, s) in zip(xs, shapes) {
                let chunk = s[axis...].reduce(1, *)
                out += x[(o * chunk)..<((o + 1) * chunk)]
            }
        }
        return out
    }
}

/// Runs a model exported as a chain of chunk programs (consecutive layers, each chunk with its own KV
/// state of the same layout): every call runs the chunks' function in order (`ANESequenceLayout.chain`).
public final class ANEChainExecutor {
    public let chunks: [ANEExecutor]
    public let layout: ANESequenceLayout
    public private(set) var position = 0

    public init(programs: [ANEProgram], pool: ThreadPool? = nil) throws {
        guard !programs.isEmpty else { throw ANELMError("an ANE chain needs at least one program") }
        let pool = pool ?? ThreadPool(threads: ThreadPool.physicalCoreCount)
        chunks = programs.map { ANEExecutor(program: $0, pool: pool) }
        layout = try ANESequenceLayout(metadata: ANESequenceLayout.chainMetadata(programs.map(\.metadata)))
    }

    public func reset() {
        chunks.forEach { $0.reset() }
        position = 0
    }

    public func forward(_ tokens: [Int]) throws -> (logits: [Float], token: Int) {
        let result = try layout.forward(tokens, start: position) { function, inputs in
            try ANESequenceLayout.chain(inputs, chunks: chunks.count) { i, inputs in try chunks[i].run(function.rawValue, inputs) }
        }
        position += tokens.count
        return result
    }
}
