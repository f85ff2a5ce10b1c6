import CANELMKernels
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

/// Causal attention of `tokens` new queries over a cache layer that already holds their keys and values
/// (stored, not yet committed). `queries` and `out` are `[token][head][headDim]`. One task per token,
/// key/value head and span of positions: the heads of a group are scored together, so each cached row is
/// read once per token. Prefill has tasks enough in its tokens (one span each); decode splits the
/// positions into spans so that every thread has some, and merges the spans' outputs by the weights of
/// their log-sum-exps (position-split "flash decoding").
func causalAttention(_ a: AttentionShape, cache: KVCache, layer l: Int, queries: UnsafeMutablePointer<Float>, tokens n: Int, start: Int, into out: UnsafeMutablePointer<Float>, pool: ThreadPool) {
    let headDim = a.headDim, qWidth = a.heads * headDim, group = a.heads / a.kvHeads
    let elementSize = cache.element == .f16 ? 2 : 4, kvType = Int32(cache.element.rawValue)
    let pairs = n * a.kvHeads
    let positions = min(start + n, a.window ?? Int.max)
    let spans = pool.threads == 1 ? 1 : max(1, min((2 * pool.threads + pairs - 1) / pairs, positions / 64))
    // With several spans each writes its own output and log-sum-exp per head, merged below.
    let partial = spans > 1 ? UnsafeMutablePointer<Float>.allocate(capacity: n * a.heads * spans * (headDim + 1)) : nil
    defer { partial?.deallocate() }
    pool.parallelFor(pairs * spans) { task in
        let t = task / (a.kvHeads * spans), kvh = (task / spans) % a.kvHeads, span = task % spans
        let end = start + t + 1
        let first = a.window.map { max(0, end - $0) } ?? 0
        let visible = end - first
        let lo = first + visible * span / spans, hi = first + visible * (span + 1) / spans
        let heads = t * qWidth + kvh * group * headDim
        // Partial outputs: [token][head][span][headDim], then the log-sum-exps [token][head][span].
        let spanOut = partial.map { $0 + ((t * a.heads + kvh * group) * spans + span) * headDim } ?? out + heads
        let lse = partial.map { $0 + n * a.heads * spans * headDim + (t * a.heads + kvh * group) * spans + span }
        guard hi > lo else {   // an empty span (fewer positions than spans) weighs nothing
            if let lse { for g in 0..<group { lse[g * spans] = -.infinity } }
            return
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: group * ((hi - lo) + headDim + 1) + headDim) { scratch in
            let base = scratch.baseAddress!, offset = lo * headDim * elementSize
            // The kernel writes the group's outputs (and log-sum-exps) contiguously; spread them to their spans.
            let groupOut = partial == nil ? spanOut : base + group * (hi - lo) + headDim, groupLSE = groupOut + group * headDim
            anelm_attention(queries + heads, group, headDim, cache.keys(l, head: kvh) + offset, cache.values(l, head: kvh) + offset, kvType, headDim, hi - lo,
                            a.scale, a.softcap ?? 0, base, groupOut, lse == nil ? nil : groupLSE)
            if let lse {
                for g in 0..<group {
                    (spanOut + g * spans * headDim).update(from: groupOut + g * headDim, count: headDim)
                    lse[g * spans] = groupLSE[g]
                }
            }
        }
    }
    guard let partial else { return }
    let lses = partial + n * a.heads * spans * headDim
    for th in 0..<(n * a.heads) {
        let weights = lses + th * spans, outputs = partial + th * spans * headDim
        var top = -Float.infinity
        for s in 0..<spans { top = max(top, weights[s]) }
        var total: Float = 0
        for s in 0..<spans { weights[s] = weights[s] == -.infinity ? 0 : exp(weights[s] - top); total += weights[s] }
        let o = out + th * headDim
        o.update(repeating: 0, count: headDim)
        for s in 0..<spans where weights[s] > 0 { Kernels.axpy(weights[s] / total, outputs + s * headDim, o, count: headDim) }
    }
}
