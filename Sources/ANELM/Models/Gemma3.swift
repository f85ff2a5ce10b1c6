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

extension Gemma3TensorNames {
    /// The weights LoRA adapters may adapt, in both formats: the output layer, then q, k, v, o, gate, up, down per layer.
    static func loraTargets(layers: Int) -> LoRATargetNames {
        func names(_ n: Gemma3TensorNames) -> [String] {
            [n.output] + (0..<layers).flatMap { i -> [String] in
                let l = n.layer(i)
                return [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]
            }
        }
        return LoRATargetNames(huggingFace: names(huggingFace), gguf: names(gguf))
    }
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

/// One block: x + postNorm(attention(inputNorm(x))), then x + postNorm(mlp(preNorm(x))). Attention has
/// per-head q/k norms and, in local layers, a sliding window.
struct Gemma3DecoderLayer {
    let inputNorm, postAttentionNorm, preFeedforwardNorm, postFeedforwardNorm: [Float]
    let attention: DecoderAttention
    let mlp: GatedMLP
    /// Whether the layer attends within the sliding window (local, with the local RoPE) or to every position.
    let isSliding: Bool

    init(_ w: WeightReader, _ norm: Gemma3NormReader, _ names: Gemma3TensorNames.Layer, _ c: Gemma3Configuration, type: Gemma3LayerType) throws {
        let heads = c.numAttentionHeads
        let kvHeads = c.numKeyValueHeads
        let headDim = c.headDim
        let hidden = c.hiddenSize
        let bias = c.attentionBias
        isSliding = type == .slidingAttention
        inputNorm = try norm(names.inputNorm, count: hidden)
        postAttentionNorm = try norm(names.postAttentionNorm, count: hidden)
        preFeedforwardNorm = try norm(names.preFeedforwardNorm, count: hidden)
        postFeedforwardNorm = try norm(names.postFeedforwardNorm, count: hidden)
        // No score soft-capping: `Gemma3Attention` keeps `attn_logit_softcapping` from the config but never
        // passes it to the attention function (Gemma 2 did), and llama.cpp's gemma3 graph has none either.
        attention = DecoderAttention(
            q: try w.linear(names.q, bias: bias ? names.qBias : nil, out: heads * headDim, in: hidden),
            k: try w.linear(names.k, bias: bias ? names.kBias : nil, out: kvHeads * headDim, in: hidden),
            v: try w.linear(names.v, bias: bias ? names.vBias : nil, out: kvHeads * headDim, in: hidden),
            o: try w.linear(names.o, bias: bias ? names.oBias : nil, out: hidden, in: heads * headDim),
            qNorm: try norm(names.qNorm, count: headDim), kNorm: try norm(names.kNorm, count: headDim),
            shape: AttentionShape(
                heads: heads, kvHeads: kvHeads, headDim: headDim, scale: 1 / c.queryPreAttnScalar.squareRoot(),
                window: isSliding ? c.slidingWindow : nil, softcap: nil))
        mlp = try GatedMLP(
            w, gate: names.gate, up: names.up, down: names.down, hidden: hidden, intermediate: c.intermediateSize,
            activation: c.hiddenActivation == "gelu" ? .gelu : .geluTanh)
    }
}

public final class Gemma3Model: TransformerDecoder {
    public let configuration: Gemma3Configuration
    /// Scaled by √hidden, rounded as transformers rounds it: to the embedding's dtype in a Hugging Face folder.
    let embedding: TokenEmbedding
    let layers: [Gemma3DecoderLayer]
    let head: OutputHead
    let localRope: RotaryEmbedding
    let globalRope: RotaryEmbedding

    init(
        configuration c: Gemma3Configuration, store: TensorStore, names: Gemma3TensorNames, precision: Precision, lora: LoRABinder? = nil, pool: ThreadPool
    ) throws {
        try c.validate()
        let w = WeightReader(store: store, precision: precision, lora: lora)
        let norm = Gemma3NormReader(weights: w, includesOne: names.normsIncludeOne)
        configuration = c
        let table = try w.matrix(names.embedding, rows: c.vocabSize, cols: c.hiddenSize)
        let scale = Float(c.hiddenSize).squareRoot()
        // `embed_scale.to(self.weight.dtype)`; llama.cpp (GGUF) multiplies by the f32 value.
        embedding = TokenEmbedding(table: table, scale: names.roundsEmbeddingScale ? Self.rounded(scale, to: try w.tensor(names.embedding).type) : scale)
        layers = try c.layerTypes.enumerated().map { try Gemma3DecoderLayer(w, norm, names.layer($0.offset), c, type: $0.element) }
        head = OutputHead(
            norm: try norm(names.outputNorm, count: c.hiddenSize), eps: c.rmsNormEps,
            output: try OutputHead.linear(w, name: names.output, tiedTo: table, tied: c.tieWordEmbeddings),
            softcap: c.finalLogitSoftcapping)
        // Gemma's GGUF files are NeoX-style (no q/k permutation): both formats rotate halves.
        localRope = RotaryEmbedding(style: .halves, headDim: c.headDim, theta: c.ropeLocalBaseFreq, scaling: .none)
        globalRope = RotaryEmbedding(style: .halves, headDim: c.headDim, theta: c.ropeTheta, scaling: c.ropeScaling)

        super.init(
            familyName: "Gemma 3", dimensions: c.dimensions, vocabularySize: c.vocabSize, contextLength: c.maxPositionEmbeddings, precision: precision,
            pool: pool)
        adapters = try lora?.finish()
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

    override func run(_ batch: DecoderBatch, allPositions: Bool) -> [Float] {
        let n = batch.count
        let hidden = configuration.hiddenSize
        let eps = configuration.rmsNormEps
        let s = configuration.dimensions.scratch(rows: n)

        // 1. Token embeddings, scaled by √hidden.
        embedding(batch.tokens, into: s.x.pointer)

        for (l, layer) in layers.enumerated() {
            // 2. Attention (q/k norms, RoPE of the layer's kind, sliding window in local layers), post-normed.
            rmsNorm(s.x.pointer, layer.inputNorm, eps: eps, rows: n, width: hidden, into: s.xn.pointer, pool: pool)
            layer.attention(
                s.xn.pointer, layer: l, batch: batch, rope: layer.isSliding ? localRope : globalRope, normEps: eps,
                scratch: s, into: s.projected.pointer, pool: pool)
            rmsNorm(s.projected.pointer, layer.postAttentionNorm, eps: eps, rows: n, width: hidden, into: s.projected.pointer, pool: pool)
            Kernels.addInPlace(s.x.pointer, s.projected.pointer, count: n * hidden)

            // 3. Feed-forward: down(gelu(gate(x)) * up(x)), pre- and post-normed.
            rmsNorm(s.x.pointer, layer.preFeedforwardNorm, eps: eps, rows: n, width: hidden, into: s.xn.pointer, pool: pool)
            layer.mlp(s.xn.pointer, tokens: n, lora: batch.lora, scratch: s, into: s.projected.pointer, pool: pool)
            rmsNorm(s.projected.pointer, layer.postFeedforwardNorm, eps: eps, rows: n, width: hidden, into: s.projected.pointer, pool: pool)
            Kernels.addInPlace(s.x.pointer, s.projected.pointer, count: n * hidden)
        }
        batch.commit()

        // 4. Final norm and logits (soft-capped when configured), for each sequence's last token unless every position is asked for.
        return head.logits(
            s.x.pointer, rows: batch.outputRows(allPositions: allPositions), lora: batch.outputLoRA(allPositions: allPositions), scratch: s, pool: pool)
    }
}

/// Building a `Gemma3Model` from each file format.
extension Gemma3Model {
    /// The weights of `source` LoRA adapters may adapt, in both formats.
    static func loraTargets(_ source: ModelSource) throws -> LoRATargetNames {
        Gemma3TensorNames.loraTargets(layers: try Gemma3Configuration(source).numHiddenLayers)
    }

    static func load(_ source: ModelSource, _ options: LoadOptions, _ pool: ThreadPool) throws -> LanguageModel {
        var config = try Gemma3Configuration(source)
        config.maxPositionEmbeddings = try options.contextLength(cappedAt: config.maxPositionEmbeddings)
        let names: Gemma3TensorNames
        switch source {
        case .gguf: names = .gguf
        case .huggingFace: names = .huggingFace
        }
        let lora = try options.loraBinder(source, names: loraTargets(source), pool: pool)
        return try Gemma3Model(configuration: config, store: source.tensors, names: names, precision: options.precision, lora: lora, pool: pool)
    }
}
