import Foundation

/// The shape and scoring rule of one attention layer, shared by the model families.
struct AttentionShape {
    let heads: Int
    let kvHeads: Int
    let headDim: Int
    /// Multiplies q·k (1/√headDim for Llama; Gemma's `query_pre_attn_scalar^-0.5`).
    let scale: Float
    /// Keys visible to a query: its own position and the `window - 1` before it; nil sees all.
    var window: Int? = nil
    /// Scores become `tanh(s / cap) · cap` before the softmax (Gemma's `attn_logit_softcapping`).
    var softcap: Float? = nil
}

/// Causal attention of `tokens` new queries over a cache layer that already holds their keys and values.
/// `queries` and `out` are `[token][head][headDim]`; the cache rows are `[position][kvHead][headDim]`.
func causalAttention(_ a: AttentionShape, cache: KVCache, layer l: Int, queries: UnsafeMutablePointer<Float>, tokens n: Int, start: Int, into out: UnsafeMutablePointer<Float>, pool: ThreadPool) {
    let headDim = a.headDim, group = a.heads / a.kvHeads, kvWidth = cache.rowWidth, qWidth = a.heads * headDim
    let scale = a.scale
    let keys = cache.keys(l), values = cache.values(l)
    let span = start + n
    pool.parallelFor(n * a.heads) { task in
        let t = task / a.heads, h = task % a.heads, kvh = h / group
        let q = queries + t * qWidth + h * headDim
        let end = start + t + 1
        let first = a.window.map { max(0, end - $0) } ?? 0
        let visible = end - first
        withUnsafeTemporaryAllocation(of: Float.self, capacity: span) { scores in
            let s = scores.baseAddress!
            for j in 0..<visible { s[j] = Kernels.dot(q, keys + (first + j) * kvWidth + kvh * headDim, count: headDim) * scale }
            if let cap = a.softcap {
                for j in 0..<visible { s[j] = tanhf(s[j] / cap) * cap }
            }
            Kernels.softmax(s, count: visible)
            let o = out + t * qWidth + h * headDim
            o.update(repeating: 0, count: headDim)
            for j in 0..<visible { Kernels.axpy(s[j], values + (first + j) * kvWidth + kvh * headDim, o, count: headDim) }
        }
    }
}
