/// How much of the arithmetic is allowed to be approximate.
public enum Precision: String, Sendable, CaseIterable {
    /// Weights as stored (quantized kernels with quantized activations, f16 KV cache): fast.
    case auto
    /// Every weight dequantized to f32 at load, all arithmetic f32: the reference-exact path.
    case f32
}

/// A linear layer `y = x·Wᵀ + b` over `tokens` rows of `x`.
struct Linear {
    let weight: WeightMatrix
    let bias: [Float]?

    var inFeatures: Int { weight.cols }
    var outFeatures: Int { weight.rows }

    func callAsFunction(_ x: UnsafePointer<Float>, tokens: Int, into y: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        Linear.apply([(self, y)], to: x, tokens: tokens, pool: pool)
    }

    /// Several layers of the same input in one pass (q/k/v, gate/up).
    static func apply(_ layers: [(Linear, UnsafeMutablePointer<Float>)], to x: UnsafePointer<Float>, tokens: Int, pool: ThreadPool) {
        Kernels.matmul(layers.map { ($0.0.weight, $0.1) }, x, tokens: tokens, pool: pool)
        for (layer, y) in layers {
            guard let bias = layer.bias else { continue }
            for t in 0..<tokens {
                let row = y + t * layer.outFeatures
                for i in 0..<layer.outFeatures { row[i] += bias[i] }
            }
        }
    }
}

/// Reads a model's tensors by name with shape checks, as the chosen precision wants them.
struct WeightReader {
    let store: TensorStore
    let precision: Precision

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
        return precision == .f32 ? try WeightMatrix.dequantized(t) : try WeightMatrix(t)
    }

    func linear(_ name: String, bias biasName: String?, out: Int, in inFeatures: Int) throws -> Linear {
        Linear(weight: try matrix(name, rows: out, cols: inFeatures), bias: try biasName.map { try vector($0, count: out) })
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
