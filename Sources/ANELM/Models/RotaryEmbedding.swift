import Foundation

/// Rotary position embedding: per-pair inverse frequencies (with the model's scaling applied) and
/// the rotation of a head's vector at a position.
struct RotaryEmbedding {
    let style: RoPEStyle
    let headDim: Int
    /// One frequency per rotated pair: headDim / 2 values.
    let inverseFrequencies: [Float]

    /// Frequencies as transformers computes them (`_compute_default_rope_parameters` and the llama3 /
    /// linear variants), in f32; `frequencyFactors` are GGUF's `rope_freqs.weight` divisors.
    init(style: RoPEStyle, headDim: Int, theta: Float, scaling: RoPEScaling, frequencyFactors: [Float]? = nil) {
        self.style = style
        self.headDim = headDim
        var inv = (0..<headDim / 2).map { i -> Float in 1 / powf(theta, Float(2 * i) / Float(headDim)) }
        switch scaling {
        case .none: break
        case .linear(let factor): inv = inv.map { $0 / factor }
        case .llama3(let factor, let low, let high, let original):
            let lowWavelength = Float(original) / low
            let highWavelength = Float(original) / high
            inv = inv.map { f in
                let wavelength = 2 * Float.pi / f
                if wavelength < highWavelength { return f }
                if wavelength > lowWavelength { return f / factor }
                let smooth = (Float(original) / wavelength - low) / (high - low)
                return (1 - smooth) * f / factor + smooth * f
            }
        }
        if let factors = frequencyFactors, factors.count == inv.count {
            inv = zip(inv, factors).map { $0 / $1 }
        }
        inverseFrequencies = inv
    }

    /// Rotates `heads` consecutive head vectors at `vector` for sequence position `position`.
    func apply(_ vector: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        let half = headDim / 2
        for i in 0..<half {
            let angle = Float(position) * inverseFrequencies[i]
            let c = Float(cos(Double(angle)))
            let s = Float(sin(Double(angle)))
            for h in 0..<heads {
                let v = vector + h * headDim
                let (a, b) = style == .halves ? (i, i + half) : (2 * i, 2 * i + 1)
                let x0 = v[a]
                let x1 = v[b]
                v[a] = x0 * c - x1 * s
                v[b] = x1 * c + x0 * s
            }
        }
    }

    /// Rotates the queries and keys of `tokens` consecutive positions from `start` (rows of `heads` and
    /// `kvHeads` head vectors), spread over `pool` when there are many (prefill).
    func apply(queries: UnsafeMutablePointer<Float>, heads: Int, keys: UnsafeMutablePointer<Float>, kvHeads: Int, tokens: Int, start: Int, pool: ThreadPool) {
        pool.parallelRanges(tokens, minimum: 16) { range in
            for t in range {
                apply(queries + t * heads * headDim, heads: heads, position: start + t)
                apply(keys + t * kvHeads * headDim, heads: kvHeads, position: start + t)
            }
        }
    }
}
