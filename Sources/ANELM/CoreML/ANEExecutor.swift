import CANELMKernels
import Foundation

/// Runs an `ANEGraph` on the CPU as the Neural Engine would numerically: each op computes in f32 and
/// its result is rounded to fp16 before any other op sees it; weights are fp16; states persist across calls.
public final class ANEExecutor {
    public let graph: ANEGraph
    private let pool: ThreadPool
    /// fp16 constants as f32, except conv weights and gather tables (read as fp16 bits).
    private var constantValues: [Int: [Float]] = [:]
    private var states: [[Float]]

    public init(graph: ANEGraph, pool: ThreadPool? = nil) {
        self.graph = graph
        self.pool = pool ?? ThreadPool(threads: ThreadPool.physicalCoreCount)
        var keptAsBits = Set<Int>()
        for op in graph.ops where op.kind == .conv || op.kind == .gather { keptAsBits.insert(op.inputs[op.kind == .conv ? 1 : 0]) }
        for (id, constant) in graph.constants {
            switch constant {
            case .fp16(let bits):
                if keptAsBits.contains(id) { continue }
                var f = [Float](repeating: 0, count: bits.count)
                bits.withUnsafeBufferPointer { b in f.withUnsafeMutableBufferPointer { anelm_convert_f16_to_f32(b.baseAddress, $0.baseAddress, bits.count) } }
                constantValues[id] = f
            case .int32(let v): constantValues[id] = v.map(Float.init)
            }
        }
        states = graph.states.map { [Float](repeating: 0, count: $0.shape.reduce(1, *)) }
    }

    /// Zeroes every state (a new sequence).
    public func reset() {
        for i in states.indices { states[i] = [Float](repeating: 0, count: states[i].count) }
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

    /// One decode step of a lowered language model: feeds `token` at `position`, updates the KV state,
    /// and returns the fp16 logits (as f32) and the graph's own argmax.
    public func step(token: Int, position: Int) throws -> (logits: [Float], argmax: Int) {
        let n = graph.metadata["context_length"] ?? 0, vocab = graph.metadata["vocab_size"] ?? 0
        guard position >= 0, position < n else { throw ANELMError("position \(position) is outside the graph's context of \(n)") }
        guard token >= 0, token < vocab else { throw ANELMError("token id \(token) is outside the vocabulary of \(vocab)") }
        var oneHot = [Float](repeating: 0, count: n)
        oneHot[position] = 1
        // Additive mask: keys after `position` are hidden (-65504, fp16's lowest finite, not -inf).
        let mask = (0..<n).map { $0 <= position ? Float(0) : -65504 }
        let out = try run(["token": [Float(token)], "position_onehot": oneHot, "attention_mask": mask])
        var logits = [Float]()
        logits.reserveCapacity(vocab)
        for c in 0..<(graph.metadata["output_chunks"] ?? 0) {
            guard let chunk = out["logits_\(c)"] else { throw ANELMError("graph has no output logits_\(c)") }
            logits += chunk
        }
        guard let token = out["token"]?.first else { throw ANELMError("graph has no output token") }
        return (logits, Int(token))
    }

    /// Runs the whole graph once on named inputs; returns every named output (int32 values as whole floats).
    public func run(_ inputs: [String: [Float]]) throws -> [String: [Float]] {
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
            case .gather: result = try gather(op, shapes, computed: values[op.inputs[0]], try value(op.inputs[1]))
            case .conv: result = try conv(op, shapes, try value(op.inputs[0]), bias: op.inputs.count > 2 ? try value(op.inputs[2]) : nil)
            case .mul, .add, .sub: result = Self.broadcast(op.kind, try value(op.inputs[0]), shapes[0], try value(op.inputs[1]), shapes[1])
            case .abs: result = try value(op.inputs[0]).map { Swift.abs($0) }
            case .inverse: result = try value(op.inputs[0]).map { 1 / $0 }
            case .rsqrt: result = try value(op.inputs[0]).map { 1 / $0.squareRoot() }
            case .square: result = try value(op.inputs[0]).map { $0 * $0 }
            case .sigmoid: result = try value(op.inputs[0]).map { 1 / (1 + expf(-$0)) }
            case .reduceMean, .reduceMax, .reduceArgmax, .softmax: result = Self.alongAxis(op.kind, try value(op.inputs[0]), shapes[0], op.axis)
            case .matmul: result = Self.matmul(try value(op.inputs[0]), shapes[0], try value(op.inputs[1]), shapes[1], op.transposeX, op.transposeY)
            case .sliceByIndex: result = Self.slice(try value(op.inputs[0]), shapes[0], op.axis, op.begin, op.end)
            case .concat: result = Self.concat(try op.inputs.map(value), shapes, op.axis)
            }
            guard let out = op.output else { continue }
            if graph.tensors[out].dtype == .fp16 {
                for i in result.indices { result[i] = Self.roundedToFP16(result[i]) }
            }
            values[out] = result
        }
        var outputs: [String: [Float]] = [:]
        for (name, id) in graph.outputs { outputs[name] = try value(id) }
        return outputs
    }

    // MARK: Ops

    private func fp16Bits(_ id: Int) throws -> [UInt16] {
        guard case .fp16(let bits)? = graph.constants[id] else { throw ANELMError("ANE graph: \(graph.tensors[id].name) must be an fp16 constant") }
        return bits
    }

    /// Sizes before, along and after `axis` of a rank-4 shape.
    private static func split(_ shape: [Int], _ axis: Int) -> (outer: Int, size: Int, inner: Int) {
        (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }

    private func gather(_ op: ANEOp, _ shapes: [[Int]], computed: [Float]?, _ indices: [Float]) throws -> [Float] {
        let (outer, size, inner) = Self.split(shapes[0], op.axis)
        let source: [Float]
        if let v = computed ?? constantValues[op.inputs[0]] {
            source = v
        } else {
            // A large fp16 table (the embedding): convert only the selected slices.
            let bits = try fp16Bits(op.inputs[0])
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

    private func conv(_ op: ANEOp, _ shapes: [[Int]], _ x: [Float], bias: [Float]?) throws -> [Float] {
        let cin = shapes[0][1], s = shapes[0][3], cout = shapes[1][0]
        let weight = try fp16Bits(op.inputs[1])
        // The kernel wants positions as rows: transpose (C, S) to (S, C) and back when S > 1.
        var rows = x
        if s > 1 { for c in 0..<cin { for p in 0..<s { rows[p * cin + c] = x[c * s + p] } } }
        var y = [Float](repeating: 0, count: cout * s)
        weight.withUnsafeBytes { w in
            rows.withUnsafeBufferPointer { xr in
                y.withUnsafeMutableBufferPointer { yr in
                    let wp = w.baseAddress, xp = xr.baseAddress, yp = yr.baseAddress
                    pool.parallelRanges(cout, minimum: max(1, 8192 / max(cin, 1))) { r in
                        anelm_matmul_rows(Int32(ANELM_F16), wp, cin * 2, cin, xp, nil, s, yp, cout, r.lowerBound, r.upperBound)
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
        let shape = zip(sa, sb).map { max($0, $1) }
        func strides(_ s: [Int]) -> [Int] {
            var st = [0, 0, 0, 0], run = 1
            for d in (0..<4).reversed() { st[d] = s[d] == 1 ? 0 : run; run *= s[d] }
            return st
        }
        let ta = strides(sa), tb = strides(sb)
        var out = [Float](repeating: 0, count: shape.reduce(1, *))
        var i = 0
        for d0 in 0..<shape[0] {
            for d1 in 0..<shape[1] {
                for d2 in 0..<shape[2] {
                    var ia = d0 * ta[0] + d1 * ta[1] + d2 * ta[2], ib = d0 * tb[0] + d1 * tb[1] + d2 * tb[2]
                    for _ in 0..<shape[3] {
                        let x = a[ia], y = b[ib]
                        out[i] = kind == .mul ? x * y : kind == .add ? x + y : x - y
                        i += 1; ia += ta[3]; ib += tb[3]
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
                var best = -Float.infinity, bestIndex = 0, sum: Float = 0
                for j in 0..<size {
                    let v = x[base + j * inner]
                    if v > best { best = v; bestIndex = j }
                    sum += v
                }
                switch kind {
                case .reduceMean: out[o * inner + k] = sum / Float(size)
                case .reduceMax: out[o * inner + k] = best
                case .reduceArgmax: out[o * inner + k] = Float(bestIndex)
                default:
                    var total: Float = 0
                    for j in 0..<size { let e = expf(x[base + j * inner] - best); out[base + j * inner] = e; total += e }
                    for j in 0..<size { out[base + j * inner] /= total }
                }
            }
        }
        return out
    }

    static func matmul(_ x: [Float], _ sx: [Int], _ y: [Float], _ sy: [Int], _ tx: Bool, _ ty: Bool) -> [Float] {
        let m = tx ? sx[3] : sx[1], k = tx ? sx[1] : sx[3], n = ty ? sy[1] : sy[3]
        var out = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum: Float = 0
                for p in 0..<k {
                    let a = tx ? x[p * sx[3] + i] : x[i * sx[3] + p]
                    let b = ty ? y[j * sy[3] + p] : y[p * sy[3] + j]
                    sum += a * b
                }
                out[i * n + j] = sum
            }
        }
        return out
    }

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
