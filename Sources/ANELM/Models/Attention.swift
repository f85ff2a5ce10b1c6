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
/// (stored, not yet committed). `queries` and `out` are `[token][head][headDim]`. One task per token and
/// key/value head: the heads of a group are scored together, so each cached row is read from memory once
/// per token. With too few such tasks to keep the pool busy (decode) and a head's cache small enough to
/// stay in L2 (so the re-reads cost no memory traffic), each query head is a task of its own.
func causalAttention(_ a: AttentionShape, cache: KVCache, layer l: Int, queries: UnsafeMutablePointer<Float>, tokens n: Int, start: Int, into out: UnsafeMutablePointer<Float>, pool: ThreadPool) {
    let headDim = a.headDim, kvWidth = cache.rowWidth, qWidth = a.heads * headDim
    let keys = cache.keys(l), values = cache.values(l)
    let elementSize = cache.element == .f16 ? 2 : 4, kvType = Int32(cache.element.rawValue)
    let headCacheBytes = 2 * (start + n) * headDim * elementSize
    let group = n * a.kvHeads >= 2 * pool.threads || headCacheBytes > 512 * 1024 ? a.heads / a.kvHeads : 1
    let groupsPerToken = a.heads / group, headsPerKV = a.heads / a.kvHeads
    pool.parallelFor(n * groupsPerToken) { task in
        let t = task / groupsPerToken, firstHead = (task % groupsPerToken) * group, kvh = firstHead / headsPerKV
        let end = start + t + 1
        let first = a.window.map { max(0, end - $0) } ?? 0
        let visible = end - first
        let offset = (first * kvWidth + kvh * headDim) * elementSize
        let heads = t * qWidth + firstHead * headDim
        withUnsafeTemporaryAllocation(of: Float.self, capacity: group * visible + headDim) { scratch in
            anelm_attention(queries + heads, group, headDim, keys + offset, values + offset, kvType, kvWidth, visible,
                            a.scale, a.softcap ?? 0, scratch.baseAddress, out + heads)
        }
    }
}
