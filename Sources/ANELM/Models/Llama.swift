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

extension LlamaTensorNames {
    /// The weights LoRA adapters may adapt, in both formats: the output layer, then q, k, v, o, gate, up, down per layer.
    /// q/k rows of a `llama` GGUF are in RoPE-pair order (`ggufPermutes`), so are a converted adapter's.
    static func loraTargets(_ c: LlamaConfiguration, ggufPermutes: Bool) -> LoRATargetNames {
        func names(_ n: LlamaTensorNames) -> [String] {
            [n.output] + (0..<c.numHiddenLayers).flatMap { i -> [String] in
                let l = n.layer(i)
                return [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]
            }
        }
        var rows: [String: [Int]] = [:]
        if ggufPermutes {
            for i in 0..<c.numHiddenLayers {
                rows[gguf.layer(i).q] = LoRATargetNames.ropePairRows(heads: c.numAttentionHeads, headDim: c.headDim)
                rows[gguf.layer(i).k] = LoRATargetNames.ropePairRows(heads: c.numKeyValueHeads, headDim: c.headDim)
            }
        }
        return LoRATargetNames(huggingFace: names(huggingFace), gguf: names(gguf), ggufRowSource: rows)
    }
}

/// One transformer block: pre-norm attention and pre-norm SwiGLU MLP, each added to the residual stream.
struct LlamaDecoderLayer {
    let attentionNorm: [Float]
    let attention: DecoderAttention
    let mlpNorm: [Float]
    let mlp: GatedMLP

    init(_ w: WeightReader, _ names: LlamaTensorNames.Layer, _ c: LlamaConfiguration) throws {
        let heads = c.numAttentionHeads
        let kvHeads = c.numKeyValueHeads
        let headDim = c.headDim
        let hidden = c.hiddenSize
        let bias = c.attentionBias
        attentionNorm = try w.vector(names.attentionNorm, count: hidden)
        attention = DecoderAttention(
            q: try w.linear(names.q, bias: bias ? names.qBias : nil, out: heads * headDim, in: hidden),
            k: try w.linear(names.k, bias: bias ? names.kBias : nil, out: kvHeads * headDim, in: hidden),
            v: try w.linear(names.v, bias: bias ? names.vBias : nil, out: kvHeads * headDim, in: hidden),
            o: try w.linear(names.o, bias: nil, out: hidden, in: heads * headDim),
            shape: AttentionShape(heads: heads, kvHeads: kvHeads, headDim: headDim, scale: 1 / Float(headDim).squareRoot()))
        mlpNorm = try w.vector(names.mlpNorm, count: hidden)
        mlp = try GatedMLP(w, gate: names.gate, up: names.up, down: names.down, hidden: hidden, intermediate: c.intermediateSize, activation: .silu)
    }
}

public final class LlamaModel: TransformerDecoder {
    public let configuration: LlamaConfiguration
    let embedding: TokenEmbedding
    let layers: [LlamaDecoderLayer]
    let head: OutputHead
    let rope: RotaryEmbedding

    init(
        configuration c: LlamaConfiguration, store: TensorStore, names: LlamaTensorNames, ropeStyle: RoPEStyle, precision: Precision, lora: LoRABinder? = nil,
        pool: ThreadPool
    ) throws {
        try c.validate()
        let w = WeightReader(store: store, precision: precision, lora: lora)
        configuration = c
        let table = try w.matrix(names.embedding, rows: c.vocabSize, cols: c.hiddenSize)
        embedding = TokenEmbedding(table: table)
        layers = try (0..<c.numHiddenLayers).map { try LlamaDecoderLayer(w, names.layer($0), c) }
        head = OutputHead(
            norm: try w.vector(names.outputNorm, count: c.hiddenSize), eps: c.rmsNormEps,
            output: try OutputHead.linear(w, name: names.output, tiedTo: table, tied: c.tieWordEmbeddings))
        let factors = try names.ropeFrequencies.flatMap { w.has($0) ? try w.vector($0, count: c.headDim / 2) : nil }
        rope = RotaryEmbedding(style: ropeStyle, headDim: c.headDim, theta: c.ropeTheta, scaling: try c.ropeScaling(), frequencyFactors: factors)

        super.init(
            familyName: "Llama", dimensions: c.dimensions, vocabularySize: c.vocabSize, contextLength: c.maxPositionEmbeddings, precision: precision, pool: pool
        )
        adapters = try lora?.finish()
    }

    override func run(_ batch: DecoderBatch, allPositions: Bool) -> [Float] {
        let n = batch.count
        let hidden = configuration.hiddenSize
        let eps = configuration.rmsNormEps
        let s = configuration.dimensions.scratch(rows: n)

        // 1. Token embeddings.
        embedding(batch.tokens, into: s.x.pointer)

        for (l, layer) in layers.enumerated() {
            // 2. Attention: q/k/v projections, RoPE, append k/v to each cache, attend, project back.
            rmsNorm(s.x.pointer, layer.attentionNorm, eps: eps, rows: n, width: hidden, into: s.xn.pointer, pool: pool)
            layer.attention(s.xn.pointer, layer: l, batch: batch, rope: rope, normEps: eps, scratch: s, into: s.projected.pointer, pool: pool)
            Kernels.addInPlace(s.x.pointer, s.projected.pointer, count: n * hidden)

            // 3. Feed-forward: down(silu(gate(x)) * up(x)).
            rmsNorm(s.x.pointer, layer.mlpNorm, eps: eps, rows: n, width: hidden, into: s.xn.pointer, pool: pool)
            layer.mlp(s.xn.pointer, tokens: n, lora: batch.lora, scratch: s, into: s.projected.pointer, pool: pool)
            Kernels.addInPlace(s.x.pointer, s.projected.pointer, count: n * hidden)
        }
        batch.commit()

        // 4. Final norm and logits, for each sequence's last token unless every position is asked for.
        return head.logits(
            s.x.pointer, rows: batch.outputRows(allPositions: allPositions), lora: batch.outputLoRA(allPositions: allPositions), scratch: s, pool: pool)
    }
}
