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
    public init(json s: [String: JSONScalar]?) throws {
        guard let s else { self = .none; return }
        let kind = s["rope_type"]?.string ?? s["type"]?.string ?? "default"
        let factor = Float(s["factor"]?.number ?? 1)
        switch kind {
        case "default": self = .none
        case "linear": self = .linear(factor: factor)
        case "llama3":
            self = .llama3(
                factor: factor,
                lowFreqFactor: Float(s["low_freq_factor"]?.number ?? 1),
                highFreqFactor: Float(s["high_freq_factor"]?.number ?? 4),
                originalContext: Int(s["original_max_position_embeddings"]?.number ?? 8192))
        default:
            throw ANELMError("rope_scaling type '\(kind)' is not supported (supported: linear, llama3)")
        }
    }
}

/// The Llama family's hyper-parameters. Keys are Hugging Face's `config.json` keys; GGUF metadata is
/// mapped onto the same fields.
public struct LlamaConfiguration: Decodable, Sendable {
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
    public var ropeScalingJSON: [String: JSONScalar]?

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
        case .linear(let f): ropeScalingJSON = ["rope_type": .string("linear"), "factor": .number(Double(f))]
        case .llama3(let f, let lo, let hi, let orig):
            ropeScalingJSON = [
                "rope_type": .string("llama3"), "factor": .number(Double(f)),
                "low_freq_factor": .number(Double(lo)), "high_freq_factor": .number(Double(hi)),
                "original_max_position_embeddings": .number(Double(orig)),
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
        let ropeParameters = try c.decodeIfPresent([String: JSONScalar].self, forKey: .ropeParameters)
        ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? ropeParameters?["rope_theta"]?.number.map(Float.init) ?? 10000
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 2048
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        // Qwen2 always has q/k/v biases and its config does not say so.
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? (modelType == "qwen2")
        ropeScalingJSON = try c.decodeIfPresent([String: JSONScalar].self, forKey: .ropeScalingJSON) ?? ropeParameters
    }

    /// The parsed `rope_scaling` section.
    public func ropeScaling() throws -> RoPEScaling { try RoPEScaling(json: ropeScalingJSON) }

    var dimensions: DecoderDimensions {
        DecoderDimensions(layers: numHiddenLayers, hidden: hiddenSize, heads: numAttentionHeads, kvHeads: numKeyValueHeads,
                          headDim: headDim, intermediate: intermediateSize)
    }

    /// Checks sizes that the forward pass relies on, so a bad file gives an error rather than a trap.
    public func validate() throws {
        try validateTransformerShape(hiddenSize: hiddenSize, intermediateSize: intermediateSize, numHiddenLayers: numHiddenLayers,
                                     numAttentionHeads: numAttentionHeads, numKeyValueHeads: numKeyValueHeads, headDim: headDim,
                                     vocabSize: vocabSize, maxPositionEmbeddings: maxPositionEmbeddings)
        try validatePositive([(rmsNormEps, "rms_norm_eps"), (ropeTheta, "rope_theta")])
        _ = try ropeScaling()
    }
}

/// A JSON scalar, for small free-form config sections such as `rope_scaling`.
public enum JSONScalar: Codable, Sendable, Equatable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case null

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else { self = .null }  // arrays/objects inside such sections are not used
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .number(let d): try c.encode(d)
        case .bool(let b): try c.encode(b)
        case .null: try c.encodeNil()
        }
    }

    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var number: Double? { if case .number(let d) = self { return d }; return nil }
}
