/// The sizes every decoder-only transformer configuration has (the Llama family, Gemma 3).
protocol TransformerConfiguration {
    var hiddenSize: Int { get }
    var intermediateSize: Int { get }
    var numHiddenLayers: Int { get }
    var numAttentionHeads: Int { get }
    var numKeyValueHeads: Int { get }
    var headDim: Int { get }
    var vocabSize: Int { get }
    var maxPositionEmbeddings: Int { get }
}

extension TransformerConfiguration {
    var dimensions: DecoderDimensions {
        DecoderDimensions(
            layers: numHiddenLayers, hidden: hiddenSize, heads: numAttentionHeads, kvHeads: numKeyValueHeads,
            headDim: headDim, intermediate: intermediateSize)
    }

    /// Checks the sizes the forward pass relies on, so a bad file gives an error rather than a trap.
    func validateShape() throws {
        func positive(_ v: Int, _ name: String) throws {
            guard v > 0 else { throw ANELMError("model configuration: \(name) must be positive, got \(v)") }
        }
        try positive(hiddenSize, "hidden_size")
        try positive(intermediateSize, "intermediate_size")
        try positive(numHiddenLayers, "num_hidden_layers")
        try positive(numAttentionHeads, "num_attention_heads")
        try positive(numKeyValueHeads, "num_key_value_heads")
        try positive(headDim, "head_dim")
        try positive(vocabSize, "vocab_size")
        try positive(maxPositionEmbeddings, "max_position_embeddings")
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw ANELMError("model configuration: num_attention_heads (\(numAttentionHeads)) is not a multiple of num_key_value_heads (\(numKeyValueHeads))")
        }
        guard headDim % 2 == 0 else { throw ANELMError("model configuration: head_dim must be even for RoPE, got \(headDim)") }
        let limit = 1 << 20
        for (v, n) in [
            (hiddenSize, "hidden_size"), (intermediateSize, "intermediate_size"), (numHiddenLayers, "num_hidden_layers"),
            (numAttentionHeads, "num_attention_heads"), (headDim, "head_dim"),
        ] where v > limit {
            throw ANELMError("model configuration: \(n) = \(v) is implausibly large")
        }
    }
}

/// Checks floating-point hyper-parameters from a file: NaN, infinite or non-positive values (a RoPE base,
/// a norm epsilon of NaN) would run and produce garbage text instead of an error.
func validatePositive(_ values: [(value: Float, name: String)]) throws {
    for (value, name) in values where !(value.isFinite && value > 0) {
        throw ANELMError("model configuration: \(name) must be a finite positive number, got \(value)")
    }
}
