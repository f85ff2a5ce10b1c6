import Foundation

// Gemma 3 text (`Gemma3ForCausalLM`, GGUF `gemma3`): embeddings scaled by √hidden, (1 + w) RMSNorms
// before and after attention and MLP, q/k RMSNorm per head, GELU-tanh gated MLP, interleaved
// sliding-window (local) and global layers with their own RoPE bases, optional final-logit soft-capping.

/// Tensor names of one file format, per role.
struct Gemma3TensorNames {
    let embedding: String
    let outputNorm: String
    let output: String
    let layer: (Int) -> Layer
    /// Whether the file's norm weights already hold `1 + w` (llama.cpp's converter adds the 1).
    let normsIncludeOne: Bool
    /// Whether √hidden is rounded to the embedding's dtype (transformers) or kept in f32 (llama.cpp).
    let roundsEmbeddingScale: Bool

    struct Layer {
        let inputNorm, postAttentionNorm, preFeedforwardNorm, postFeedforwardNorm: String
        let q, k, v, o, qBias, kBias, vBias, oBias, qNorm, kNorm: String
        let gate, up, down: String
    }

    static let gguf = Gemma3TensorNames(
        embedding: "token_embd.weight", outputNorm: "output_norm.weight", output: "output.weight",
        layer: { i in
            let p = "blk.\(i)."
            return Layer(
                inputNorm: p + "attn_norm.weight", postAttentionNorm: p + "post_attention_norm.weight",
                preFeedforwardNorm: p + "ffn_norm.weight", postFeedforwardNorm: p + "post_ffw_norm.weight",
                q: p + "attn_q.weight", k: p + "attn_k.weight", v: p + "attn_v.weight", o: p + "attn_output.weight",
                qBias: p + "attn_q.bias", kBias: p + "attn_k.bias", vBias: p + "attn_v.bias", oBias: p + "attn_output.bias",
                qNorm: p + "attn_q_norm.weight", kNorm: p + "attn_k_norm.weight",
                gate: p + "ffn_gate.weight", up: p + "ffn_up.weight", down: p + "ffn_down.weight")
        },
        normsIncludeOne: true, roundsEmbeddingScale: false)

    static let huggingFace = Gemma3TensorNames(
        embedding: "model.embed_tokens.weight", outputNorm: "model.norm.weight", output: "lm_head.weight",
        layer: { i in
            let p = "model.layers.\(i)."
            return Layer(
                inputNorm: p + "input_layernorm.weight", postAttentionNorm: p + "post_attention_layernorm.weight",
                preFeedforwardNorm: p + "pre_feedforward_layernorm.weight", postFeedforwardNorm: p + "post_feedforward_layernorm.weight",
                q: p + "self_attn.q_proj.weight", k: p + "self_attn.k_proj.weight", v: p + "self_attn.v_proj.weight",
                o: p + "self_attn.o_proj.weight", qBias: p + "self_attn.q_proj.bias", kBias: p + "self_attn.k_proj.bias",
                vBias: p + "self_attn.v_proj.bias", oBias: p + "self_attn.o_proj.bias",
                qNorm: p + "self_attn.q_norm.weight", kNorm: p + "self_attn.k_norm.weight",
                gate: p + "mlp.gate_proj.weight", up: p + "mlp.up_proj.weight", down: p + "mlp.down_proj.weight")
        },
        normsIncludeOne: false, roundsEmbeddingScale: true)
}

/// Reads Gemma's RMSNorm weights as the factors they multiply by: `1 + w` (computed in f32, as
/// `Gemma3RMSNorm` does), unless the file stores them with the 1 added.
struct Gemma3NormReader {
    let weights: WeightReader
    let includesOne: Bool

    func callAsFunction(_ name: String, count: Int) throws -> [Float] {
        let w = try weights.vector(name, count: count)
        return includesOne ? w : w.map { 1 + $0 }
    }
}

/// Multi-head attention with grouped key/value heads and per-head q/k RMSNorm.
struct Gemma3Attention {
    let q, k, v, o: Linear
    let qNorm, kNorm: [Float]
    let shape: AttentionShape
    let isSliding: Bool

    init(_ w: WeightReader, _ norm: Gemma3NormReader, _ names: Gemma3TensorNames.Layer, _ c: Gemma3Configuration, type: Gemma3LayerType) throws {
        let heads = c.numAttentionHeads, kvHeads = c.numKeyValueHeads, headDim = c.headDim, bias = c.attentionBias
        q = try w.linear(names.q, bias: bias ? names.qBias : nil, out: heads * headDim, in: c.hiddenSize)
        k = try w.linear(names.k, bias: bias ? names.kBias : nil, out: kvHeads * headDim, in: c.hiddenSize)
        v = try w.linear(names.v, bias: bias ? names.vBias : nil, out: kvHeads * headDim, in: c.hiddenSize)
        o = try w.linear(names.o, bias: bias ? names.oBias : nil, out: c.hiddenSize, in: heads * headDim)
        qNorm = try norm(names.qNorm, count: headDim)
        kNorm = try norm(names.kNorm, count: headDim)
        isSliding = type == .slidingAttention
        // No score soft-capping: `Gemma3Attention` keeps `attn_logit_softcapping` from the config but never
        // passes it to the attention function (Gemma 2 did), and llama.cpp's gemma3 graph has none either.
        shape = AttentionShape(
            heads: heads, kvHeads: kvHeads, headDim: headDim, scale: 1 / c.queryPreAttnScalar.squareRoot(),
            window: isSliding ? c.slidingWindow : nil, softcap: nil)
    }
}

/// The gated feed-forward block: down(gelu_tanh(gate(x)) * up(x)).
struct Gemma3MLP {
    let gate, up, down: Linear

    init(_ w: WeightReader, _ names: Gemma3TensorNames.Layer, _ c: Gemma3Configuration) throws {
        gate = try w.linear(names.gate, bias: nil, out: c.intermediateSize, in: c.hiddenSize)
        up = try w.linear(names.up, bias: nil, out: c.intermediateSize, in: c.hiddenSize)
        down = try w.linear(names.down, bias: nil, out: c.hiddenSize, in: c.intermediateSize)
    }
}

/// One block: x + postNorm(attention(inputNorm(x))), then x + postNorm(mlp(preNorm(x))).
struct Gemma3DecoderLayer {
    let inputNorm, postAttentionNorm, preFeedforwardNorm, postFeedforwardNorm: [Float]
    let attention: Gemma3Attention
    let mlp: Gemma3MLP

    init(_ w: WeightReader, _ norm: Gemma3NormReader, _ names: Gemma3TensorNames.Layer, _ c: Gemma3Configuration, type: Gemma3LayerType) throws {
        inputNorm = try norm(names.inputNorm, count: c.hiddenSize)
        postAttentionNorm = try norm(names.postAttentionNorm, count: c.hiddenSize)
        preFeedforwardNorm = try norm(names.preFeedforwardNorm, count: c.hiddenSize)
        postFeedforwardNorm = try norm(names.postFeedforwardNorm, count: c.hiddenSize)
        attention = try Gemma3Attention(w, norm, names, c, type: type)
        mlp = try Gemma3MLP(w, names, c)
    }
}

public final class Gemma3Model: LanguageModel {
    public let configuration: Gemma3Configuration
    let embedding: WeightMatrix
    /// √hidden, rounded as transformers rounds it: to the embedding's dtype in a Hugging Face folder.
    let embeddingScale: Float
    let layers: [Gemma3DecoderLayer]
    let outputNorm: [Float]
    let output: Linear
    let localRope: RotaryEmbedding
    let globalRope: RotaryEmbedding
    let pool: ThreadPool
    let cacheElement: TensorType

    public var vocabularySize: Int { configuration.vocabSize }
    public var contextLength: Int { configuration.maxPositionEmbeddings }

    init(configuration c: Gemma3Configuration, store: TensorStore, names: Gemma3TensorNames, precision: Precision, pool: ThreadPool) throws {
        try c.validate()
        let w = WeightReader(store: store, precision: precision)
        let norm = Gemma3NormReader(weights: w, includesOne: names.normsIncludeOne)
        configuration = c
        self.pool = pool
        cacheElement = KVCache.element(for: precision)
        embedding = try w.matrix(names.embedding, rows: c.vocabSize, cols: c.hiddenSize)
        let scale = Float(c.hiddenSize).squareRoot()
        // `embed_scale.to(self.weight.dtype)`; llama.cpp (GGUF) multiplies by the f32 value.
        embeddingScale = names.roundsEmbeddingScale ? Self.rounded(scale, to: try w.tensor(names.embedding).type) : scale
        layers = try c.layerTypes.enumerated().map { try Gemma3DecoderLayer(w, norm, names.layer($0.offset), c, type: $0.element) }
        outputNorm = try norm(names.outputNorm, count: c.hiddenSize)
        if !c.tieWordEmbeddings || w.has(names.output) {
            output = try w.linear(names.output, bias: nil, out: c.vocabSize, in: c.hiddenSize)
        } else {
            output = Linear(weight: embedding, bias: nil)
        }
        // Gemma's GGUF files are NeoX-style (no q/k permutation): both formats rotate halves.
        localRope = RotaryEmbedding(style: .halves, headDim: c.headDim, theta: c.ropeLocalBaseFreq, scaling: .none)
        globalRope = RotaryEmbedding(style: .halves, headDim: c.headDim, theta: c.ropeTheta, scaling: c.ropeScaling)
    }

    /// `value` rounded to nearest-even in a 16-bit float type (f32 and quantized types: unchanged).
    static func rounded(_ value: Float, to type: TensorType) -> Float {
        let dropped: UInt32
        switch type {
        case .bf16: dropped = 16
        case .f16: dropped = 13
        default: return value
        }
        let bits = value.bitPattern
        let half = (UInt32(1) << (dropped - 1)) - 1
        let rounded = (bits &+ half &+ ((bits >> dropped) & 1)) & ~((UInt32(1) << dropped) - 1)
        return Float(bitPattern: rounded)
    }

    public func makeState() -> ModelState {
        KVCache(layers: configuration.numHiddenLayers, kvHeads: configuration.numKeyValueHeads, headDim: configuration.headDim, capacity: contextLength, element: cacheElement)
    }

    public func forward(_ tokens: [Int], state: ModelState, allPositions: Bool) throws -> [Float] {
        guard let cache = state as? KVCache, cache.layerCount == layers.count else { throw ANELMError("state does not belong to this Gemma 3 model") }
        guard !tokens.isEmpty else { throw ANELMError("forward needs at least one token") }
        if let bad = tokens.first(where: { $0 < 0 || $0 >= vocabularySize }) {
            throw ANELMError("token id \(bad) is outside the vocabulary of \(vocabularySize)")
        }
        let c = configuration
        let n = tokens.count, start = cache.count
        try cache.grow(by: n)
        let hidden = c.hiddenSize, headDim = c.headDim, qWidth = c.numAttentionHeads * headDim, kvWidth = cache.rowWidth
        let eps = c.rmsNormEps

        let x = FloatBuffer(n * hidden)               // residual stream
        let xn = FloatBuffer(n * hidden)              // normalized input of a block
        let q = FloatBuffer(n * qWidth)
        let k = FloatBuffer(n * kvWidth), v = FloatBuffer(n * kvWidth)
        let attended = FloatBuffer(n * qWidth)
        let projected = FloatBuffer(n * hidden)
        let gate = FloatBuffer(n * c.intermediateSize)
        let up = FloatBuffer(n * c.intermediateSize)

        // 1. Token embeddings, scaled by √hidden.
        for (i, token) in tokens.enumerated() { embedding.dequantizeRow(token, into: x.pointer + i * hidden) }
        Kernels.scale(x.pointer, by: embeddingScale, count: n * hidden)

        for (l, layer) in layers.enumerated() {
            // 2. Attention: q/k/v, per-head q/k norms, RoPE of the layer's kind, cache, attend, o, post-norm.
            let a = layer.attention
            rmsNorm(x.pointer, layer.inputNorm, eps: eps, rows: n, width: hidden, into: xn.pointer, pool: pool)
            Linear.apply([(a.q, q.pointer), (a.k, k.pointer), (a.v, v.pointer)], to: xn.pointer, tokens: n, pool: pool)
            rmsNorm(q.pointer, a.qNorm, eps: eps, rows: n * c.numAttentionHeads, width: headDim, into: q.pointer, pool: pool)
            rmsNorm(k.pointer, a.kNorm, eps: eps, rows: n * c.numKeyValueHeads, width: headDim, into: k.pointer, pool: pool)
            let rope = a.isSliding ? localRope : globalRope
            rope.apply(queries: q.pointer, heads: c.numAttentionHeads, keys: k.pointer, kvHeads: c.numKeyValueHeads, tokens: n, start: start, pool: pool)
            cache.store(layer: l, keys: k.pointer, values: v.pointer, tokens: n)
            causalAttention(a.shape, cache: cache, layer: l, queries: q.pointer, tokens: n, start: start, into: attended.pointer, pool: pool)
            a.o(attended.pointer, tokens: n, into: projected.pointer, pool: pool)
            rmsNorm(projected.pointer, layer.postAttentionNorm, eps: eps, rows: n, width: hidden, into: projected.pointer, pool: pool)
            Kernels.addInPlace(x.pointer, projected.pointer, count: n * hidden)

            // 3. Feed-forward: down(gelu(gate(x)) * up(x)), pre- and post-normed.
            rmsNorm(x.pointer, layer.preFeedforwardNorm, eps: eps, rows: n, width: hidden, into: xn.pointer, pool: pool)
            Linear.apply([(layer.mlp.gate, gate.pointer), (layer.mlp.up, up.pointer)], to: xn.pointer, tokens: n, pool: pool)
            pool.parallelRanges(n * c.intermediateSize, minimum: Kernels.elementwiseGrain) { r in
                if c.hiddenActivation == "gelu" {
                    Kernels.geluMul(gate: gate.pointer + r.lowerBound, up: up.pointer + r.lowerBound, count: r.count)
                } else {
                    Kernels.geluTanhMul(gate: gate.pointer + r.lowerBound, up: up.pointer + r.lowerBound, count: r.count)
                }
            }
            layer.mlp.down(gate.pointer, tokens: n, into: projected.pointer, pool: pool)
            rmsNorm(projected.pointer, layer.postFeedforwardNorm, eps: eps, rows: n, width: hidden, into: projected.pointer, pool: pool)
            Kernels.addInPlace(x.pointer, projected.pointer, count: n * hidden)
        }
        cache.commit(n)

        // 4. Final norm and logits (soft-capped when configured), for the last token unless every position is asked for.
        let first = allPositions ? 0 : n - 1
        let rows = n - first
        rmsNorm(x.pointer + first * hidden, outputNorm, eps: eps, rows: rows, width: hidden, into: xn.pointer, pool: pool)
        var logits = [Float](repeating: 0, count: rows * c.vocabSize)
        logits.withUnsafeMutableBufferPointer { output(xn.pointer, tokens: rows, into: $0.baseAddress!, pool: pool) }
        if let cap = c.finalLogitSoftcapping {
            for i in logits.indices { logits[i] = tanhf(logits[i] / cap) * cap }
        }
        return logits
    }
}

/// Building a `Gemma3Model` from each file format.
extension Gemma3Model {
    static func load(_ source: ModelSource, _ options: LoadOptions, _ pool: ThreadPool) throws -> LanguageModel {
        var config: Gemma3Configuration
        let store: TensorStore, names: Gemma3TensorNames
        switch source {
        case .gguf(let file):
            config = try Gemma3Configuration(gguf: file)
            store = file
            names = .gguf
        case .huggingFace(let folder):
            config = try Gemma3Configuration(configJSON: folder.configData)
            store = folder.tensors
            names = .huggingFace
        }
        if let limit = options.contextLength {
            guard limit > 0 else { throw ANELMError("context length must be positive, got \(limit)") }
            config.maxPositionEmbeddings = min(config.maxPositionEmbeddings, limit)
        }
        return try Gemma3Model(configuration: config, store: store, names: names, precision: options.precision, pool: pool)
    }
}
