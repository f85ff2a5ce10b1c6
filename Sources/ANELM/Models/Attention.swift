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
    /// Queries and the softmax's weights rounded to f16 as llama.cpp's CPU backend rounds them (precision `ggml`).
    var roundsLikeGGML = false
}

/// Causal attention of `tokens` new queries over a cache layer that already holds their keys and values
/// (stored, not yet committed). `queries` and `out` are `[token][head][headDim]`. One task per token,
/// key/value head and span of positions: the heads of a group are scored together, so each cached row is
/// read once per token. Prefill has tasks enough in its tokens (one span each); decode splits the
/// positions into spans so that every thread has some, and merges the spans' outputs by the weights of
/// their log-sum-exps (position-split "flash decoding").
func causalAttention(
    _ a: AttentionShape, cache: KVCache, layer l: Int, queries: UnsafeMutablePointer<Float>, tokens n: Int, start: Int, into out: UnsafeMutablePointer<Float>,
    pool: ThreadPool
) {
    let headDim = a.headDim
    let qWidth = a.heads * headDim
    let group = a.heads / a.kvHeads
    let elementSize = cache.element == .f16 ? 2 : 4
    let kvType = Int32(cache.element.rawValue)
    let pairs = n * a.kvHeads
    // Spans of at least 64 positions, as many as give every thread two tasks.
    let positions = min(start + n, a.window ?? Int.max)
    // (One span when rounding like ggml: its weights are rounded after one softmax over all positions.)
    let spans = pool.threads == 1 || a.roundsLikeGGML ? 1 : max(1, min((2 * pool.threads + pairs - 1) / pairs, positions / 64))
    if a.roundsLikeGGML { anelm_round_f32(Int32(TensorType.f16.rawValue), queries, queries, n * qWidth) }
    // With several spans, each span's outputs ([token][span][head][headDim]) and log-sum-exps
    // ([token][span][head]) go to `partial`, laid out so that a group's heads are contiguous as the
    // kernel writes them; merged below.
    let outputCount = n * spans * a.heads * headDim
    let partial = spans > 1 ? UnsafeMutablePointer<Float>.allocate(capacity: outputCount + n * spans * a.heads) : nil
    defer { partial?.deallocate() }
    pool.parallelFor(pairs * spans) { task in
        let t = task / (a.kvHeads * spans)
        let kvh = (task / spans) % a.kvHeads
        let span = task % spans
        let end = start + t + 1
        let first = a.window.map { max(0, end - $0) } ?? 0
        let visible = end - first
        let lo = first + visible * span / spans
        let hi = first + visible * (span + 1) / spans
        let heads = t * qWidth + kvh * group * headDim
        let slot = (t * spans + span) * a.heads + kvh * group  // the group's first head in `partial`
        let groupOut = partial.map { $0 + slot * headDim } ?? out + heads
        let groupLSE = partial.map { $0 + outputCount + slot }
        guard hi > lo else {  // an empty span (fewer positions than spans) weighs nothing
            groupLSE?.update(repeating: -.infinity, count: group)
            return
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: group * (hi - lo) + headDim) { scratch in
            let offset = lo * headDim * elementSize
            (a.roundsLikeGGML ? anelm_attention_ggml : anelm_attention)(
                queries + heads, group, headDim, cache.keys(l, head: kvh) + offset, cache.values(l, head: kvh) + offset, kvType, headDim, hi - lo,
                a.scale, a.softcap ?? 0, scratch.baseAddress, groupOut, groupLSE)
        }
    }
    guard let partial else { return }
    let lses = partial + outputCount
    for t in 0..<n {
        for h in 0..<a.heads {
            // Span s weighs exp(lse_s − max) / Σ: its share of the softmax's denominator.
            let lse = lses + t * spans * a.heads + h
            let stride = a.heads  // span s at lse[s · stride]
            var top = -Float.infinity
            for s in 0..<spans { top = max(top, lse[s * stride]) }
            var total: Float = 0
            for s in 0..<spans { total += exp(lse[s * stride] - top) }
            let o = out + t * qWidth + h * headDim
            o.update(repeating: 0, count: headDim)
            for s in 0..<spans {
                let weight = exp(lse[s * stride] - top) / total
                if weight > 0 { Kernels.axpy(weight, partial + ((t * spans + s) * a.heads + h) * headDim, o, count: headDim) }
            }
        }
    }
}
