import Foundation

/// How rotary embeddings pair up the dimensions of a head.
public enum RoPEStyle: String, Sendable {
    /// Pairs (i, i + d/2): Hugging Face's `rotate_half`, and GGUF files of NeoX-style architectures (Qwen2).
    case halves
    /// Pairs (2i, 2i + 1): GGUF files of the `llama` architecture, whose converter permuted q/k rows.
    case adjacent
}

/// RoPE frequency scaling, as `rope_scaling` in config.json names it.
public enum RoPEScaling: Sendable, Equatable {
    case none
    case linear(factor: Float)
    case llama3(factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalContext: Int)

    /// From a `rope_scaling` / `rope_parameters` section of config.json (nil: no scaling).
    public init(json s: JSONObject?) throws {
        guard let s else {
            self = .none
            return
        }
        let kind = s["rope_type"]?.stringValue ?? s["type"]?.stringValue ?? "default"
        let factor = Float(s["factor"]?.numberValue ?? 1)
        switch kind {
        case "default": self = .none
        case "linear": self = .linear(factor: factor)
        case "llama3":
            self = .llama3(
                factor: factor,
                lowFreqFactor: Float(s["low_freq_factor"]?.numberValue ?? 1),
                highFreqFactor: Float(s["high_freq_factor"]?.numberValue ?? 4),
                originalContext: s["original_max_position_embeddings"]?.integerValue ?? 8192)
        default:
            throw ANELMError("rope_scaling type '\(kind)' is not supported (supported: linear, llama3)")
        }
    }
}

/// The Llama family's hyper-parameters. Keys are Hugging Face's `config.json` keys; GGUF metadata is
/// mapped onto the same fields.
public struct LlamaConfiguration: Decodable, Sendable, TransformerConfiguration {
    public var modelType: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var rmsNormEps: Float
    public var ropeTheta: Float
    public var vocabSize: Int
    public var maxPositionEmbeddings: Int
    public var tieWordEmbeddings: Bool
    public var attentionBias: Bool
    public var ropeScalingJSON: JSONObject?

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case vocabSize = "vocab_size"
        case maxPositionEmbeddings = "max_position_embeddings"
        case tieWordEmbeddings = "tie_word_embeddings"
        case attentionBias = "attention_bias"
        case ropeScalingJSON = "rope_scaling"
        case ropeParameters = "rope_parameters"
    }

    public init(
        modelType: String, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int,
        numAttentionHeads: Int, numKeyValueHeads: Int, headDim: Int? = nil, rmsNormEps: Float,
        ropeTheta: Float, vocabSize: Int, maxPositionEmbeddings: Int, tieWordEmbeddings: Bool,
        attentionBias: Bool, ropeScaling: RoPEScaling = .none
    ) {
        self.modelType = modelType
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads
        self.headDim = headDim ?? (numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0)
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.vocabSize = vocabSize
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionBias = attentionBias
        switch ropeScaling {
        case .none: ropeScalingJSON = nil
        case .linear(let f): ropeScalingJSON = ["rope_type": "linear", "factor": .double(Double(f))]
        case .llama3(let f, let lo, let hi, let orig):
            ropeScalingJSON = [
                "rope_type": "llama3", "factor": .double(Double(f)),
                "low_freq_factor": .double(Double(lo)), "high_freq_factor": .double(Double(hi)),
                "original_max_position_embeddings": .int(orig),
            ]
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? "llama"
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? numAttentionHeads
        let explicitHeadDim = try c.decodeIfPresent(Int.self, forKey: .headDim)
        headDim = explicitHeadDim ?? (numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0)
        rmsNormEps = try c.decodeIfPresent(Float.self, forKey: .rmsNormEps) ?? 1e-6
        // transformers ≥ 5 writes `rope_parameters` (theta, type and scaling together) instead of
        // `rope_theta` + `rope_scaling`.
        let ropeParameters = try c.decodeIfPresent(JSONObject.self, forKey: .ropeParameters)
        ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? ropeParameters?["rope_theta"]?.numberValue.map(Float.init) ?? 10000
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 2048
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        // Qwen2 always has q/k/v biases and its config does not say so.
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? (modelType == "qwen2")
        ropeScalingJSON = try c.decodeIfPresent(JSONObject.self, forKey: .ropeScalingJSON) ?? ropeParameters
    }

    /// The parsed `rope_scaling` section.
    public func ropeScaling() throws -> RoPEScaling { try RoPEScaling(json: ropeScalingJSON) }

    /// Checks sizes that the forward pass relies on, so a bad file gives an error rather than a trap.
    public func validate() throws {
        try validateShape()
        try validatePositive([(rmsNormEps, "rms_norm_eps"), (ropeTheta, "rope_theta")])
        _ = try ropeScaling()
    }
}
