import Foundation

// The Llama family: Llama 2/3.x, SmolLM2, Mistral, Qwen2/2.5 (q/k/v bias). GQA, RoPE, RMSNorm, SwiGLU.

/// Tensor names of one file format, per role.
struct LlamaTensorNames {
    let embedding: String
    let outputNorm: String
    let output: String
    let ropeFrequencies: String?
    let layer: (Int) -> Layer

    struct Layer {
        let attentionNorm, q, k, v, o, qBias, kBias, vBias, mlpNorm, gate, up, down: String
    }

    static let gguf = LlamaTensorNames(
        embedding: "token_embd.weight", outputNorm: "output_norm.weight", output: "output.weight",
        ropeFrequencies: "rope_freqs.weight",
        layer: { i in
            let p = "blk.\(i)."
            return Layer(
                attentionNorm: p + "attn_norm.weight", q: p + "attn_q.weight", k: p + "attn_k.weight",
                v: p + "attn_v.weight", o: p + "attn_output.weight", qBias: p + "attn_q.bias",
                kBias: p + "attn_k.bias", vBias: p + "attn_v.bias", mlpNorm: p + "ffn_norm.weight",
                gate: p + "ffn_gate.weight", up: p + "ffn_up.weight", down: p + "ffn_down.weight")
        })

    static let huggingFace = LlamaTensorNames(
        embedding: "model.embed_tokens.weight", outputNorm: "model.norm.weight", output: "lm_head.weight",
        ropeFrequencies: nil,
        layer: { i in
            let p = "model.layers.\(i)."
            return Layer(
                attentionNorm: p + "input_layernorm.weight", q: p + "self_attn.q_proj.weight",
                k: p + "self_attn.k_proj.weight", v: p + "self_attn.v_proj.weight",
                o: p + "self_attn.o_proj.weight", qBias: p + "self_attn.q_proj.bias",
                kBias: p + "self_attn.k_proj.bias", vBias: p + "self_attn.v_proj.bias",
                mlpNorm: p + "post_attention_layernorm.weight", gate: p + "mlp.gate_proj.weight",
                up: p + "mlp.up_proj.weight", down: p + "mlp.down_proj.weight")
        })
}

/// Multi-head attention with grouped key/value heads.
struct LlamaAttention {
    let q, k, v, o: Linear
    let shape: AttentionShape

    init(_ w: WeightReader, _ names: LlamaTensorNames.Layer, _ c: LlamaConfiguration) throws {
        let heads = c.numAttentionHeads, kvHeads = c.numKeyValueHeads, headDim = c.headDim
        shape = AttentionShape(heads: heads, kvHeads: kvHeads, headDim: headDim, scale: 1 / Float(headDim).squareRoot())
        let bias = c.attentionBias
        q = try w.linear(names.q, bias: bias ? names.qBias : nil, out: heads * headDim, in: c.hiddenSize)
        k = try w.linear(names.k, bias: bias ? names.kBias : nil, out: kvHeads * headDim, in: c.hiddenSize)
        v = try w.linear(names.v, bias: bias ? names.vBias : nil, out: kvHeads * headDim, in: c.hiddenSize)
        o = try w.linear(names.o, bias: nil, out: c.hiddenSize, in: heads * headDim)
    }
}

/// The SwiGLU feed-forward block: down(silu(gate(x)) * up(x)).
struct LlamaMLP {
    let gate, up, down: Linear

    init(_ w: WeightReader, _ names: LlamaTensorNames.Layer, _ c: LlamaConfiguration) throws {
        gate = try w.linear(names.gate, bias: nil, out: c.intermediateSize, in: c.hiddenSize)
        up = try w.linear(names.up, bias: nil, out: c.intermediateSize, in: c.hiddenSize)
        down = try w.linear(names.down, bias: nil, out: c.hiddenSize, in: c.intermediateSize)
    }
}

/// One transformer block: pre-norm attention and pre-norm MLP, each added to the residual stream.
struct LlamaDecoderLayer {
    let attentionNorm: [Float]
    let attention: LlamaAttention
    let mlpNorm: [Float]
    let mlp: LlamaMLP

    init(_ w: WeightReader, _ names: LlamaTensorNames.Layer, _ c: LlamaConfiguration) throws {
        attentionNorm = try w.vector(names.attentionNorm, count: c.hiddenSize)
        attention = try LlamaAttention(w, names, c)
        mlpNorm = try w.vector(names.mlpNorm, count: c.hiddenSize)
        mlp = try LlamaMLP(w, names, c)
    }
}

public final class LlamaModel: LanguageModel {
    public let configuration: LlamaConfiguration
    let embedding: WeightMatrix
    let layers: [LlamaDecoderLayer]
    let outputNorm: [Float]
    let output: Linear
    let rope: RotaryEmbedding
    let pool: ThreadPool
    let cacheElement: TensorType

    public var vocabularySize: Int { configuration.vocabSize }
    public var contextLength: Int { configuration.maxPositionEmbeddings }

    init(configuration c: LlamaConfiguration, store: TensorStore, names: LlamaTensorNames, ropeStyle: RoPEStyle, precision: Precision, pool: ThreadPool) throws {
        try c.validate()
        let w = WeightReader(store: store, precision: precision)
        configuration = c
        self.pool = pool
        cacheElement = KVCache.element(for: precision)
        embedding = try w.matrix(names.embedding, rows: c.vocabSize, cols: c.hiddenSize)
        layers = try (0..<c.numHiddenLayers).map { try LlamaDecoderLayer(w, names.layer($0), c) }
        outputNorm = try w.vector(names.outputNorm, count: c.hiddenSize)
        // Tied embeddings: the output head reads the embedding table.
        if !c.tieWordEmbeddings || w.has(names.output) {
            output = try w.linear(names.output, bias: nil, out: c.vocabSize, in: c.hiddenSize)
        } else {
            output = Linear(weight: embedding, bias: nil)
        }
        let factors = try names.ropeFrequencies.flatMap { w.has($0) ? try w.vector($0, count: c.headDim / 2) : nil }
        rope = RotaryEmbedding(style: ropeStyle, headDim: c.headDim, theta: c.ropeTheta, scaling: try c.ropeScaling(), frequencyFactors: factors)
    }

    public func makeState() -> ModelState {
        KVCache(layers: configuration.numHiddenLayers, kvHeads: configuration.numKeyValueHeads, headDim: configuration.headDim, capacity: contextLength, element: cacheElement)
    }

    public func forward(_ tokens: [Int], state: ModelState, allPositions: Bool) throws -> [Float] {
        guard let cache = state as? KVCache else { throw ANELMError("state does not belong to a Llama model") }
        guard !tokens.isEmpty else { throw ANELMError("forward needs at least one token") }
        if let bad = tokens.first(where: { $0 < 0 || $0 >= vocabularySize }) {
            throw ANELMError("token id \(bad) is outside the vocabulary of \(vocabularySize)")
        }
        let c = configuration
        let n = tokens.count, start = cache.count
        try cache.grow(by: n)
        let hidden = c.hiddenSize, qWidth = c.numAttentionHeads * c.headDim, kvWidth = cache.rowWidth

        let x = FloatBuffer(n * hidden)               // residual stream
        let xn = FloatBuffer(n * hidden)              // normalized input of a block
        let q = FloatBuffer(n * qWidth)
        let k = FloatBuffer(n * kvWidth), v = FloatBuffer(n * kvWidth)
        let attended = FloatBuffer(n * qWidth)
        let projected = FloatBuffer(n * hidden)
        let gate = FloatBuffer(n * c.intermediateSize)
        let up = FloatBuffer(n * c.intermediateSize)

        // 1. Token embeddings.
        for (i, token) in tokens.enumerated() { embedding.dequantizeRow(token, into: x.pointer + i * hidden) }

        for (l, layer) in layers.enumerated() {
            // 2. Attention: q/k/v projections, RoPE, append k/v to the cache, attend, project back.
            rmsNorm(x.pointer, layer.attentionNorm, eps: c.rmsNormEps, rows: n, width: hidden, into: xn.pointer, pool: pool)
            Linear.apply([(layer.attention.q, q.pointer), (layer.attention.k, k.pointer), (layer.attention.v, v.pointer)], to: xn.pointer, tokens: n, pool: pool)
            rope.apply(queries: q.pointer, heads: c.numAttentionHeads, keys: k.pointer, kvHeads: c.numKeyValueHeads, tokens: n, start: start, pool: pool)
            cache.store(layer: l, keys: k.pointer, values: v.pointer, tokens: n)
            causalAttention(layer.attention.shape, cache: cache, layer: l, queries: q.pointer, tokens: n, start: start, into: attended.pointer, pool: pool)
            layer.attention.o(attended.pointer, tokens: n, into: projected.pointer, pool: pool)
            Kernels.addInPlace(x.pointer, projected.pointer, count: n * hidden)

            // 3. Feed-forward: down(silu(gate(x)) * up(x)).
            rmsNorm(x.pointer, layer.mlpNorm, eps: c.rmsNormEps, rows: n, width: hidden, into: xn.pointer, pool: pool)
            Linear.apply([(layer.mlp.gate, gate.pointer), (layer.mlp.up, up.pointer)], to: xn.pointer, tokens: n, pool: pool)
            pool.parallelRanges(n * c.intermediateSize, minimum: Kernels.elementwiseGrain) { r in
                Kernels.siluMul(gate: gate.pointer + r.lowerBound, up: up.pointer + r.lowerBound, count: r.count)
            }
            layer.mlp.down(gate.pointer, tokens: n, into: projected.pointer, pool: pool)
            Kernels.addInPlace(x.pointer, projected.pointer, count: n * hidden)
        }
        cache.commit(n)

        // 4. Final norm and logits, for the last token unless every position is asked for.
        let first = allPositions ? 0 : n - 1
        let rows = n - first
        rmsNorm(x.pointer + first * hidden, outputNorm, eps: c.rmsNormEps, rows: rows, width: hidden, into: xn.pointer, pool: pool)
        var logits = [Float](repeating: 0, count: rows * c.vocabSize)
        logits.withUnsafeMutableBufferPointer { output(xn.pointer, tokens: rows, into: $0.baseAddress!, pool: pool) }
        return logits
    }
}

/// RMSNorm of each of `rows` rows of `width` floats (spread over `pool`, when given, if there are many: prefill).
func rmsNorm(_ x: UnsafePointer<Float>, _ weight: [Float], eps: Float, rows: Int, width: Int, into out: UnsafeMutablePointer<Float>, pool: ThreadPool? = nil) {
    weight.withUnsafeBufferPointer { w in
        let normRows = { (range: Range<Int>) in
            for r in range { Kernels.rmsNorm(x + r * width, weight: w.baseAddress, eps: eps, count: width, into: out + r * width) }
        }
        guard let pool else { return normRows(0..<rows) }
        pool.parallelRanges(rows, minimum: max(1, Kernels.elementwiseGrain / max(width, 1)), normRows)
    }
}
