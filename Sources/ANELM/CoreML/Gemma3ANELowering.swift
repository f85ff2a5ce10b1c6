/// Gemma 3 text: embeddings scaled by √hidden, (1 + w) RMSNorms before and after attention and MLP,
/// q/k RMSNorm per head, sliding-window (local) and global layers with their own RoPE tables and masks
/// (`sliding_mask` for the local ones), GELU-tanh gated MLP, optional final logit soft-cap.
///
/// fp16 safety: Gemma's residual stream grows past fp16's 65,504 (Gemma 3 270M: ≈ 1e5, see
/// `residualScale`). Every reader of the residual stream is
/// an RMSNorm (scale-invariant) and every writer a post-norm, so the whole stream is carried scaled by
/// `residualScale`: folded into the embedding table and the post-norm weights, and into the eps of the
/// norms that read it (eps·scale²). The logits are unchanged: the final norm removes the scale.
struct Gemma3ANELowering: ANEModelLowering {
    let model: Gemma3Model
    var maxPositions: Int { model.configuration.maxPositionEmbeddings }
    var layerCount: Int { model.layers.count }

    /// The residual stream's scale in the graph. Unscaled, Gemma 3 270M's stream overflows fp16 in the
    /// residual adds (and then every norm and the logits are NaN); at 1/16 its largest entry on the fixture
    /// prompts (up to 200 tokens) is 6,508, i.e. ≈ 1.04e5 unscaled (one outlier channel; the rest are
    /// orders of magnitude smaller), leaving 10× headroom below 65,504. A power of two changes no
    /// mantissa, so only entries below 6e-5 × 16 ≈ 1e-3 lose precision (to fp16 subnormals) — negligible
    /// next to a norm whose mean square the outlier dominates.
    static let residualScale: Float = 1 / 16

    func lower(_ f: ANEFunctionLowering) throws {
        let c = model.configuration
        let g = f.g
        let headDim = c.headDim
        let eps = c.rmsNormEps
        let s = Self.residualScale
        g.metadata["layers"] = c.numHiddenLayers
        g.metadata["sliding_window"] = c.slidingWindow
        try f.declareCache(layers: f.layers.count, kvHeads: c.numKeyValueHeads, headDim: headDim)
        var x = try f.stream(hidden: c.hiddenSize) { try f.embed(model.embedding.table, scale: model.embedding.scale * s) }

        // RoPE tables of the layer types present (local: sliding window, global: full attention).
        var tables: [Bool: (cos: ANETensor, sin: ANETensor)] = [:]
        func rope(sliding: Bool) throws -> (cos: ANETensor, sin: ANETensor) {
            if let t = tables[sliding] { return t }
            let r = sliding ? model.localRope : model.globalRope
            let t = try f.ropeTables(sliding ? "rope_local" : "rope_global", inverseFrequencies: r.inverseFrequencies, headDim: headDim)
            tables[sliding] = t
            return t
        }

        let group = c.numAttentionHeads / c.numKeyValueHeads
        // query_pre_attn_scalar^-1/2 is folded into the q norm's weights (q is normed after its projection).
        let scoreScale = 1 / c.queryPreAttnScalar.squareRoot()
        for (l, layer) in model.layers.enumerated() where f.layers.contains(l) {
            let a = layer.attention
            let slot = l - f.layers.lowerBound
            guard let qNorm = a.qNorm, let kNorm = a.kNorm else { throw ANELMError("Gemma 3 layer \(l) has no q/k norms") }
            let t = try rope(sliding: layer.isSliding)
            let mask = layer.isSliding ? f.slidingMask : f.mask
            let h = try f.rmsNorm(x, layer.inputNorm, eps: eps * s * s, "l\(l)_input_norm")
            let q = try f.linear(h, a.q, "l\(l)_q")
            let k = try f.linear(h, a.k, "l\(l)_k")
            let v = try f.linear(h, a.v, "l\(l)_v")
            var keys = [ANETensor]()
            var values = [ANETensor]()
            for kv in 0..<c.numKeyValueHeads {
                let head = kv * headDim..<(kv + 1) * headDim
                let kh = try f.rmsNorm(try g.slice(k, axis: 1, begin: head.lowerBound, end: head.upperBound), kNorm, eps: eps, "l\(l)_k\(kv)_norm")
                keys.append(try f.cache(layer: slot, kvHead: kv, values: false, try f.rope(kh, t)))
                values.append(try f.cache(layer: slot, kvHead: kv, values: true, try g.slice(v, axis: 1, begin: head.lowerBound, end: head.upperBound)))
            }
            var heads = [ANETensor]()
            for head in 0..<c.numAttentionHeads {
                let qh = try f.rmsNorm(
                    try g.slice(q, axis: 1, begin: head * headDim, end: (head + 1) * headDim),
                    qNorm.map { $0 * scoreScale }, eps: eps, "l\(l)_q\(head)_norm")
                heads.append(try f.attend(try f.rope(qh, t), keys: keys[head / group], values: values[head / group], mask: mask))
            }
            let attended = try f.linear(try g.concat(heads, axis: 1), a.o, "l\(l)_o")
            x = try g.add(x, try f.rmsNorm(attended, layer.postAttentionNorm.map { $0 * s }, eps: eps, "l\(l)_post_attn_norm"))

            let h2 = try f.rmsNorm(x, layer.preFeedforwardNorm, eps: eps * s * s, "l\(l)_pre_ffw_norm")
            let gate = try f.linear(h2, layer.mlp.gate, "l\(l)_gate")
            let up = try f.linear(h2, layer.mlp.up, "l\(l)_up")
            let act = try g.mul(g.gelu(gate, tanhApproximation: c.hiddenActivation != "gelu"), up)
            let down = try f.linear(act, layer.mlp.down, "l\(l)_down")
            x = try g.add(x, try f.rmsNorm(down, layer.postFeedforwardNorm.map { $0 * s }, eps: eps, "l\(l)_post_ffw_norm"))
        }
        try f.finish(x) { x in
            let final = try f.rmsNorm(try f.lastColumn(x), model.head.norm, eps: eps * s * s, "final_norm")
            try f.outputHead(final, model.head.output.weight, vocabularySize: c.vocabSize, softcap: c.finalLogitSoftcapping)
        }
    }
}
