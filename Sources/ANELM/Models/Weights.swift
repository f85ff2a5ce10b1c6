/// How much of the arithmetic is allowed to be approximate.
public enum Precision: String, Sendable, CaseIterable {
    /// Weights as stored (quantized kernels with quantized activations, f16 KV cache): fast.
    case auto
    /// Every weight dequantized to f32 at load, all arithmetic f32: the reference-exact path.
    case f32
    /// Weights as stored, multiplied the way llama.cpp's CPU backend multiplies them: activations rounded to 8-bit
    /// blocks as ggml's q8_0/q8_1/q8_K (or to f16/bf16 for f16/bf16 weights) instead of anelm's 16-bit blocks.
    /// Less exact than `auto`; for comparing with llama.cpp, whose greedy tokens it follows where near-ties make
    /// the two arithmetics part.
    case ggml
}

/// A linear layer `y = x·Wᵀ + b` over `tokens` rows of `x`, plus the low-rank updates of LoRA adapters:
/// `+ scale · B·(A·x)` per adapter, the scale chosen per sequence (`LoRARows`). The base weight stays as stored
/// (mapped, quantized); A and B are small f32 matrices run through the same kernels.
struct Linear {
    /// One adapter's update of this layer.
    struct LoRAPath {
        /// The adapter's id: its index in the rows' scales.
        let adapter: Int
        let weights: LoRAWeights
    }

    let weight: WeightMatrix
    let bias: [Float]?
    var lora: [LoRAPath] = []

    var inFeatures: Int { weight.cols }
    var outFeatures: Int { weight.rows }

    func callAsFunction(_ x: UnsafePointer<Float>, tokens: Int, lora rows: LoRARows = .none, into y: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        Linear.apply([(self, y)], to: x, tokens: tokens, lora: rows, pool: pool)
    }

    /// Several layers of the same input in one pass (q/k/v, gate/up).
    static func apply(
        _ layers: [(Linear, UnsafeMutablePointer<Float>)], to x: UnsafePointer<Float>, tokens: Int, lora rows: LoRARows = .none, pool: ThreadPool
    ) {
        Kernels.matmul(layers.map { ($0.0.weight, $0.1) }, x, tokens: tokens, pool: pool)
        for (layer, y) in layers {
            if let bias = layer.bias {
                for t in 0..<tokens {
                    let row = y + t * layer.outFeatures
                    for i in 0..<layer.outFeatures { row[i] += bias[i] }
                }
            }
            if !layer.lora.isEmpty { layer.addLoRA(x, rows: rows, into: y, pool: pool) }
        }
    }

    /// `y += scale · B·(A·x)` for each adapter, over each run of rows that gives it a non-zero scale (adjacent
    /// runs with the same scale as one product).
    private func addLoRA(_ x: UnsafePointer<Float>, rows: LoRARows, into y: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        for path in lora {
            var spans: [(rows: Range<Int>, scale: Float)] = []
            for run in rows.runs {
                let scale = path.adapter < run.scales.count ? run.scales[path.adapter] * path.weights.scale : 0
                guard scale != 0, !run.rows.isEmpty else { continue }
                if let last = spans.last, last.rows.upperBound == run.rows.lowerBound, last.scale == scale {
                    spans[spans.count - 1].rows = last.rows.lowerBound..<run.rows.upperBound
                } else {
                    spans.append((run.rows, scale))
                }
            }
            for span in spans {
                let n = span.rows.count
                let reduced = FloatBuffer(n * path.weights.rank)
                let update = FloatBuffer(n * outFeatures)
                Kernels.matmul(path.weights.a, x + span.rows.lowerBound * inFeatures, reduced.pointer, tokens: n, pool: pool)
                Kernels.matmul(path.weights.b, reduced.pointer, update.pointer, tokens: n, pool: pool)
                Kernels.axpy(span.scale, update.pointer, y + span.rows.lowerBound * outFeatures, count: n * outFeatures)
            }
        }
    }
}

/// Which LoRA scales apply to which rows of a forward pass: one run of rows per sequence, with its scale per
/// adapter id (a sequence's adapter set: different sequences of one batch may use different adapters).
struct LoRARows {
    var runs: [(rows: Range<Int>, scales: [Float])]
    static let none = LoRARows(runs: [])
}

/// Reads a model's tensors by name with shape checks, as the chosen precision wants them.
struct WeightReader {
    let store: TensorStore
    let precision: Precision
    /// The adapters to attach to the linear layers as they are read, if any.
    var lora: LoRABinder? = nil

    func tensor(_ name: String) throws -> Tensor {
        guard let t = try store.tensor(named: name) else { throw ANELMError("weight '\(name)' is missing from the model file") }
        return t
    }

    /// A `[rows, cols]` matrix.
    func matrix(_ name: String, rows: Int, cols: Int) throws -> WeightMatrix {
        let t = try tensor(name)
        guard t.shape.count == 2, t.shape[0] == rows, t.shape[1] == cols else {
            throw ANELMError("weight '\(name)' has shape \(t.shape), expected [\(rows), \(cols)]")
        }
        if precision == .f32 { return try WeightMatrix.dequantized(t) }
        var stored = try WeightMatrix(t)
        stored.roundsActivationsLikeGGML = precision == .ggml
        return stored
    }

    func linear(_ name: String, bias biasName: String?, out: Int, in inFeatures: Int) throws -> Linear {
        try adapted(Linear(weight: try matrix(name, rows: out, cols: inFeatures), bias: try biasName.map { try vector($0, count: out) }), name: name)
    }

    /// `linear` (read from weight `name`) with the LoRA updates of that weight.
    func adapted(_ linear: Linear, name: String) throws -> Linear {
        try lora?.attach(linear, name: name) ?? linear
    }

    /// A 1-D vector as f32 (norm weights, biases).
    func vector(_ name: String, count: Int) throws -> [Float] {
        let t = try tensor(name)
        guard t.elementCount == count, t.shape.count == 1 || t.rowCount == 1 else {
            throw ANELMError("weight '\(name)' has shape \(t.shape), expected [\(count)]")
        }
        let m = try WeightMatrix.dequantized(t)
        return Array(UnsafeBufferPointer(start: m.data.assumingMemoryBound(to: Float.self), count: count))
    }

    func has(_ name: String) -> Bool { store.tensorNames.contains(name) }
}

/// Scratch memory that is not zeroed per use and is freed with its owner.
final class FloatBuffer {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(_ count: Int) {
        self.count = max(count, 1)
        pointer = .allocate(capacity: self.count)
        pointer.initialize(repeating: 0, count: self.count)
    }
    deinit { pointer.deallocate() }
}
