import Foundation

/// BERT's hyper-parameters, config.json's keys (`BertModel`; sentence-transformers models such as all-MiniLM-L6-v2).
public struct BertConfiguration: Decodable, Sendable {
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    public var maxPositionEmbeddings: Int
    public var typeVocabSize: Int
    public var vocabSize: Int
    public var layerNormEps: Float
    public var hiddenAct: String
    public var positionEmbeddingType: String

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case intermediateSize = "intermediate_size"
        case maxPositionEmbeddings = "max_position_embeddings"
        case typeVocabSize = "type_vocab_size"
        case vocabSize = "vocab_size"
        case layerNormEps = "layer_norm_eps"
        case hiddenAct = "hidden_act"
        case positionEmbeddingType = "position_embedding_type"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        // transformers' BertConfig defaults.
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 512
        typeVocabSize = try c.decodeIfPresent(Int.self, forKey: .typeVocabSize) ?? 2
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? 1e-12
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "gelu"
        positionEmbeddingType = try c.decodeIfPresent(String.self, forKey: .positionEmbeddingType) ?? "absolute"
    }

    public var headDim: Int { numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0 }

    /// Checks what the forward pass relies on, so a bad file gives an error rather than a trap.
    public func validate() throws {
        let limit = 1 << 20
        for (value, name) in [
            (hiddenSize, "hidden_size"), (numHiddenLayers, "num_hidden_layers"), (numAttentionHeads, "num_attention_heads"),
            (intermediateSize, "intermediate_size"), (maxPositionEmbeddings, "max_position_embeddings"), (typeVocabSize, "type_vocab_size"),
            (vocabSize, "vocab_size"),
        ] {
            guard value > 0 else { throw ANELMError("model configuration: \(name) must be positive, got \(value)") }
            guard value <= limit || name == "vocab_size" else { throw ANELMError("model configuration: \(name) = \(value) is implausibly large") }
        }
        guard hiddenSize % numAttentionHeads == 0 else {
            throw ANELMError("model configuration: hidden_size (\(hiddenSize)) is not a multiple of num_attention_heads (\(numAttentionHeads))")
        }
        try validatePositive([(layerNormEps, "layer_norm_eps")])
        guard hiddenAct == "gelu" else { throw ANELMError("BERT hidden_act '\(hiddenAct)' is not supported (supported: gelu)") }
        guard positionEmbeddingType == "absolute" else {
            throw ANELMError("BERT position_embedding_type '\(positionEmbeddingType)' is not supported (supported: absolute)")
        }
    }
}

extension BertConfiguration: ModelConfiguration {
    public init(_ source: ModelSource) throws {
        switch source {
        case .gguf: throw ANELMError("anelm reads BERT models from Hugging Face folders (config.json + model.safetensors), not GGUF")
        case .huggingFace(let folder): self = try decodeConfiguration(BertConfiguration.self, from: folder.configData)
        }
    }

    public var summary: [(key: String, value: String)] {
        [
            ("kind", "text encoder (sentence embeddings: anelm embed)"), ("layers", "\(numHiddenLayers)"), ("hidden size", "\(hiddenSize)"),
            ("feed-forward size", "\(intermediateSize)"), ("attention heads", "\(numAttentionHeads) (head dim: \(headDim)), bidirectional"),
            ("vocabulary", "\(vocabSize)"), ("positions", "\(maxPositionEmbeddings) (absolute)"), ("token types", "\(typeVocabSize)"),
            ("activation", hiddenAct),
        ]
    }
}
