import Foundation

/// Whether a Gemma 3 layer attends within a sliding window (local) or over the whole sequence (global).
public enum Gemma3LayerType: String, Sendable, Decodable {
    case slidingAttention = "sliding_attention"
    case fullAttention = "full_attention"
}

/// Gemma 3 text hyper-parameters (`Gemma3TextConfig`, model_type `gemma3_text`). Keys are config.json's;
/// GGUF `gemma3.*` metadata is mapped onto the same fields.
public struct Gemma3Configuration: Sendable, TransformerConfiguration {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var rmsNormEps: Float
    public var vocabSize: Int
    public var maxPositionEmbeddings: Int
    public var tieWordEmbeddings: Bool
    public var attentionBias: Bool
    /// Attention scores are scaled by `queryPreAttnScalar^-0.5`.
    public var queryPreAttnScalar: Float
    /// Positions a local layer sees: its own and the `slidingWindow - 1` before it.
    public var slidingWindow: Int
    public var layerTypes: [Gemma3LayerType]
    /// RoPE base and scaling of the global (full-attention) layers.
    public var ropeTheta: Float
    public var ropeScaling: RoPEScaling
    /// RoPE base of the local (sliding-window) layers, never scaled.
    public var ropeLocalBaseFreq: Float
    /// Read and validated, but unused: transformers' Gemma 3 attention does not apply it.
    public var attnLogitSoftcapping: Float?
    public var finalLogitSoftcapping: Float?
    /// `gelu_pytorch_tanh` (Gemma 3) or `gelu` (erf).
    public var hiddenActivation: String

    public init(
        hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int, numAttentionHeads: Int, numKeyValueHeads: Int,
        headDim: Int, rmsNormEps: Float = 1e-6, vocabSize: Int, maxPositionEmbeddings: Int, tieWordEmbeddings: Bool = true,
        attentionBias: Bool = false, queryPreAttnScalar: Float, slidingWindow: Int, layerTypes: [Gemma3LayerType],
        ropeTheta: Float = 1_000_000, ropeScaling: RoPEScaling = .none, ropeLocalBaseFreq: Float = 10_000,
        attnLogitSoftcapping: Float? = nil, finalLogitSoftcapping: Float? = nil, hiddenActivation: String = "gelu_pytorch_tanh"
    ) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads
        self.headDim = headDim
        self.rmsNormEps = rmsNormEps
        self.vocabSize = vocabSize
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionBias = attentionBias
        self.queryPreAttnScalar = queryPreAttnScalar
        self.slidingWindow = slidingWindow
        self.layerTypes = layerTypes
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.ropeLocalBaseFreq = ropeLocalBaseFreq
        self.attnLogitSoftcapping = attnLogitSoftcapping
        self.finalLogitSoftcapping = finalLogitSoftcapping
        self.hiddenActivation = hiddenActivation
    }

    /// The layer types of `layers` layers when a config gives only `sliding_window_pattern`: every
    /// `pattern`-th layer is global, as transformers and llama.cpp derive them.
    public static func layerTypes(layers: Int, pattern: Int) -> [Gemma3LayerType] {
        (0..<layers).map { pattern > 0 && ($0 + 1) % pattern == 0 ? .fullAttention : .slidingAttention }
    }

    /// Checks what the forward pass relies on, so a bad file gives an error rather than a trap.
    public func validate() throws {
        try validateShape()
        try validatePositive([(rmsNormEps, "rms_norm_eps"), (ropeTheta, "rope_theta"), (ropeLocalBaseFreq, "rope_local_base_freq")])
        guard slidingWindow > 0 else { throw ANELMError("model configuration: sliding_window must be positive, got \(slidingWindow)") }
        guard layerTypes.count == numHiddenLayers else {
            throw ANELMError("model configuration: layer_types has \(layerTypes.count) entries for \(numHiddenLayers) layers")
        }
        guard queryPreAttnScalar > 0 else { throw ANELMError("model configuration: query_pre_attn_scalar must be positive") }
        for (cap, name) in [(attnLogitSoftcapping, "attn_logit_softcapping"), (finalLogitSoftcapping, "final_logit_softcapping")] {
            if let cap, !(cap > 0) { throw ANELMError("model configuration: \(name) must be positive, got \(cap)") }
        }
        guard ["gelu_pytorch_tanh", "gelu_tanh", "gelu"].contains(hiddenActivation) else {
            throw ANELMError("model configuration: hidden_activation '\(hiddenActivation)' is not supported (gelu_pytorch_tanh, gelu)")
        }
    }
}

extension Gemma3Configuration: Decodable {
    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case rmsNormEps = "rms_norm_eps"
        case vocabSize = "vocab_size"
        case maxPositionEmbeddings = "max_position_embeddings"
        case tieWordEmbeddings = "tie_word_embeddings"
        case attentionBias = "attention_bias"
        case queryPreAttnScalar = "query_pre_attn_scalar"
        case slidingWindow = "sliding_window"
        case slidingWindowPattern = "sliding_window_pattern"
        case layerTypes = "layer_types"
        case ropeTheta = "rope_theta"
        case ropeScaling = "rope_scaling"
        case ropeLocalBaseFreq = "rope_local_base_freq"
        case ropeParameters = "rope_parameters"
        case attnLogitSoftcapping = "attn_logit_softcapping"
        case finalLogitSoftcapping = "final_logit_softcapping"
        case hiddenActivation = "hidden_activation"
        case hiddenAct = "hidden_act"
        case useBidirectionalAttention = "use_bidirectional_attention"
    }

    /// Defaults are `Gemma3TextConfig`'s. Both config styles are read: transformers ≥ 5's
    /// `rope_parameters` per layer type + `layer_types`, and the Hub's older `rope_theta`,
    /// `rope_local_base_freq`, `rope_scaling` and `sliding_window_pattern`.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if try c.decodeIfPresent(Bool.self, forKey: .useBidirectionalAttention) == true {
            throw ANELMError("Gemma 3 with use_bidirectional_attention (an embedding model) is not supported")
        }
        let hidden = try c.decode(Int.self, forKey: .hiddenSize)
        let heads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? 8
        let layers = try c.decode(Int.self, forKey: .numHiddenLayers)
        let headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? 256
        var types = try c.decodeIfPresent([Gemma3LayerType].self, forKey: .layerTypes)
        if types == nil {
            let pattern = try c.decodeIfPresent(Int.self, forKey: .slidingWindowPattern) ?? 6
            types = Self.layerTypes(layers: layers, pattern: pattern)
        }
        // rope_parameters: {"full_attention": {...}, "sliding_attention": {...}}.
        let perType = try c.decodeIfPresent(JSONObject.self, forKey: .ropeParameters)
        let global = try perType?["full_attention"]?.objectValue ?? c.decodeIfPresent(JSONObject.self, forKey: .ropeScaling)
        let local = perType?["sliding_attention"]?.objectValue
        let globalTheta = try global?["rope_theta"]?.numberValue.map(Float.init) ?? c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? 1_000_000
        let localTheta = try local?["rope_theta"]?.numberValue.map(Float.init) ?? c.decodeIfPresent(Float.self, forKey: .ropeLocalBaseFreq) ?? 10_000
        if let kind = local?["rope_type"]?.stringValue, kind != "default" {
            throw ANELMError("Gemma 3 sliding-window layers with rope_type '\(kind)' are not supported")
        }
        self.init(
            hiddenSize: hidden, intermediateSize: try c.decode(Int.self, forKey: .intermediateSize),
            numHiddenLayers: layers, numAttentionHeads: heads,
            numKeyValueHeads: try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? heads, headDim: headDim,
            rmsNormEps: try c.decodeIfPresent(Float.self, forKey: .rmsNormEps) ?? 1e-6,
            vocabSize: try c.decode(Int.self, forKey: .vocabSize),
            maxPositionEmbeddings: try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 131_072,
            tieWordEmbeddings: try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true,
            attentionBias: try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false,
            queryPreAttnScalar: try c.decodeIfPresent(Float.self, forKey: .queryPreAttnScalar) ?? 256,
            slidingWindow: try c.decodeIfPresent(Int.self, forKey: .slidingWindow) ?? 4096,
            layerTypes: types ?? [],
            ropeTheta: globalTheta, ropeScaling: try RoPEScaling(json: global), ropeLocalBaseFreq: localTheta,
            attnLogitSoftcapping: try c.decodeIfPresent(Float.self, forKey: .attnLogitSoftcapping),
            finalLogitSoftcapping: try c.decodeIfPresent(Float.self, forKey: .finalLogitSoftcapping),
            hiddenActivation: try c.decodeIfPresent(String.self, forKey: .hiddenActivation)
                ?? c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "gelu_pytorch_tanh")
    }

    /// From config.json.
    public init(configJSON data: Data) throws {
        self = try decodeConfiguration(Gemma3Configuration.self, from: data)
    }

    /// `gemma3.attention.sliding_window_pattern` when present: a period (every n-th layer global) or,
    /// as llama.cpp writes it for newer Gemmas, one bool per layer (true: sliding); else llama.cpp's 6.
    static func ggufLayerTypes(_ file: GGUFFile, layers: Int) throws -> [Gemma3LayerType] {
        let key = "gemma3.attention.sliding_window_pattern"
        switch file.metadata[key] {
        case .array(let items)?:
            let flags = items.compactMap { item -> Bool? in
                if case .bool(let b) = item { return b }
                return nil
            }
            guard flags.count == items.count, flags.count == layers else {
                throw ANELMError("GGUF \(key) must hold one bool per layer (\(layers))")
            }
            return flags.map { $0 ? .slidingAttention : .fullAttention }
        case let value?:
            guard let pattern = value.intValue, pattern > 0 else { throw ANELMError("GGUF \(key) must be a positive integer") }
            return layerTypes(layers: layers, pattern: pattern)
        case nil:
            return layerTypes(layers: layers, pattern: 6)
        }
    }

    /// The query_pre_attn_scalar llama.cpp's gemma3 assumes: hidden/heads for Gemma 3 27B (62 layers), else head_dim.
    static func llamaCppQueryScalar(layers: Int, hidden: Int, heads: Int, headDim: Int) -> Float {
        layers == 62 && heads > 0 ? Float(hidden / heads) : Float(headDim)
    }

    /// From GGUF `gemma3.*` metadata as llama.cpp writes it. llama.cpp fixes what the file does not
    /// say: every 6th layer is global, local layers use RoPE base 10000.
    public init(gguf file: GGUFFile) throws {
        let p = try GGUFHyperParameters(file)
        guard p.architecture == "gemma3" else { throw ANELMError("GGUF architecture \(quoted(p.architecture)) is not gemma3") }
        let hidden = try p.hiddenSize
        let heads = try p.attentionHeads
        let layers = try p.int("block_count")
        let headDim = try p.headDim
        // `attention.scale` (1/√query_pre_attn_scalar) is written by anelm only for configs that depart from what
        // llama.cpp derives; the scalars are whole numbers in every Gemma config, recovered exactly by rounding.
        var queryScalar = Self.llamaCppQueryScalar(layers: layers, hidden: hidden, heads: heads, headDim: headDim)
        if let scale = try p.positiveFloat("attention.scale") {
            let scalar = 1 / (Double(scale) * Double(scale))
            queryScalar = Float(abs(scalar - scalar.rounded()) < 1e-4 * scalar ? scalar.rounded() : scalar)
        }
        self.init(
            hiddenSize: hidden, intermediateSize: try p.int("feed_forward_length"), numHiddenLayers: layers,
            numAttentionHeads: heads, numKeyValueHeads: try p.keyValueHeads, headDim: headDim,
            rmsNormEps: try p.positiveFloat("attention.layer_norm_rms_epsilon") ?? 1e-6, vocabSize: p.vocabularySize,
            maxPositionEmbeddings: try p.int("context_length"), tieWordEmbeddings: p.tiesEmbeddings,
            attentionBias: p.hasAttentionBias, queryPreAttnScalar: queryScalar,
            slidingWindow: try p.int("attention.sliding_window"),
            layerTypes: try Self.ggufLayerTypes(file, layers: layers),
            ropeTheta: try p.positiveFloat("rope.freq_base") ?? 1_000_000, ropeScaling: try p.ropeScaling,
            ropeLocalBaseFreq: try p.positiveFloat("rope.freq_base_swa") ?? 10_000,
            attnLogitSoftcapping: try p.positiveFloat("attn_logit_softcapping"),
            finalLogitSoftcapping: try p.positiveFloat("final_logit_softcapping"))
    }
}

extension Gemma3Configuration: ModelConfiguration {
    /// From config.json or GGUF metadata, whichever `source` is.
    public init(_ source: ModelSource) throws {
        switch source {
        case .gguf(let file): try self.init(gguf: file)
        case .huggingFace(let folder): try self.init(configJSON: folder.configData)
        }
    }

    public var summary: [(key: String, value: String)] {
        let local = layerTypes.filter { $0 == .slidingAttention }.count
        return [
            ("layers", "\(numHiddenLayers) (\(local) sliding-window of \(slidingWindow) positions, \(numHiddenLayers - local) global)"),
            ("hidden size", "\(hiddenSize)"), ("feed-forward size", "\(intermediateSize) (\(hiddenActivation))"),
            ("attention heads", "\(numAttentionHeads) (key/value heads: \(numKeyValueHeads), head dim: \(headDim))"),
            ("vocabulary", "\(vocabSize)"), ("context length", "\(maxPositionEmbeddings)"),
            ("rope theta", "\(ropeTheta) global, \(ropeLocalBaseFreq) local"),
            ("final logit soft-cap", finalLogitSoftcapping.map { "\($0)" } ?? "none"),
            ("tied embeddings", tieWordEmbeddings ? "yes" : "no"),
            ("KV cache per token", "\(2 * numHiddenLayers * numKeyValueHeads * headDim * 2) bytes (f16)"),
        ]
    }
}
