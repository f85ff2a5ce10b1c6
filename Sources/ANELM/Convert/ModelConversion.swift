import Foundation

/// What `anelm convert` needs to know of one family to move it between file formats: the tensor names in
/// each, how a tensor's rows are rearranged between them, and its hyper-parameters written as GGUF keys
/// (llama.cpp's, as its `convert_hf_to_gguf.py` writes them) or as config.json. Registered per family in
/// `ModelRegistry`; a re-quantization (GGUF to GGUF, folder to folder) needs none of it.
struct ModelConversion {
    /// (Hugging Face name, GGUF name) of every tensor the file may hold.
    let tensorNames: (ModelSource) throws -> [(huggingFace: String, gguf: String)]
    /// Rearranges a tensor named `ggufName` from Hugging Face's layout to GGUF's (`toGGUF`) or back.
    let reorder: (_ ggufName: String, _ values: inout [Float], _ shape: [Int], _ source: ModelSource, _ toGGUF: Bool) throws -> Void
    /// The family's GGUF metadata (`general.architecture` and the `<arch>.*` keys) from a Hugging Face folder.
    let ggufMetadata: (HFModelFolder) throws -> [(key: String, value: GGUFEncodedValue)]
    /// config.json from a GGUF file's metadata.
    let huggingFaceConfig: (GGUFFile) throws -> JSONObject
}

extension ModelConversion {
    /// The Llama family: llama.cpp stores q/k rows of `llama` models permuted so that RoPE rotates adjacent pairs.
    static let llama = ModelConversion(
        tensorNames: { source in
            let c = try LlamaConfiguration(source)
            let hf = LlamaTensorNames.huggingFace
            let gguf = LlamaTensorNames.gguf
            var pairs = [(hf.embedding, gguf.embedding), (hf.outputNorm, gguf.outputNorm), (hf.output, gguf.output)]
            for i in 0..<c.numHiddenLayers {
                let h = hf.layer(i)
                let g = gguf.layer(i)
                pairs += [
                    (h.attentionNorm, g.attentionNorm), (h.q, g.q), (h.k, g.k), (h.v, g.v), (h.o, g.o), (h.qBias, g.qBias), (h.kBias, g.kBias),
                    (h.vBias, g.vBias), (h.mlpNorm, g.mlpNorm), (h.gate, g.gate), (h.up, g.up), (h.down, g.down),
                ]
            }
            return pairs.map { (huggingFace: $0.0, gguf: $0.1) }
        },
        reorder: { name, values, shape, source, toGGUF in
            let c = try LlamaConfiguration(source)
            guard ggufArchitecture(llamaModelType: c.modelType) == "llama" else { return }  // qwen2 keeps Hugging Face's order
            let heads: Int
            if name.hasSuffix("attn_q.weight") || name.hasSuffix("attn_q.bias") {
                heads = c.numAttentionHeads
            } else if name.hasSuffix("attn_k.weight") || name.hasSuffix("attn_k.bias") {
                heads = c.numKeyValueHeads
            } else {
                return
            }
            try permuteRotaryRows(&values, rows: shape[0], rowLength: values.count / max(shape[0], 1), heads: heads, toGGUF: toGGUF)
        },
        ggufMetadata: { folder in
            let c = try LlamaConfiguration(.huggingFace(folder))
            try c.validate()
            guard try c.ropeScaling() == .none else {
                throw ANELMError("converting a model with RoPE scaling (\(c.ropeScalingJSON?["rope_type"]?.stringValue ?? "?")) to GGUF is not supported yet")
            }
            let arch = ggufArchitecture(llamaModelType: c.modelType)
            func count(_ key: String, _ v: Int) throws -> (key: String, value: GGUFEncodedValue) { ("\(arch).\(key)", try .count(v, key: key)) }
            var keys: [(key: String, value: GGUFEncodedValue)] = [
                ("general.architecture", .string(arch)),
                try count("block_count", c.numHiddenLayers), try count("context_length", c.maxPositionEmbeddings),
                try count("embedding_length", c.hiddenSize), try count("feed_forward_length", c.intermediateSize),
                try count("attention.head_count", c.numAttentionHeads), try count("attention.head_count_kv", c.numKeyValueHeads),
                ("\(arch).rope.freq_base", .float32(c.ropeTheta)), ("\(arch).attention.layer_norm_rms_epsilon", .float32(c.rmsNormEps)),
            ]
            if c.headDim != c.hiddenSize / c.numAttentionHeads {
                keys += [try count("attention.key_length", c.headDim), try count("attention.value_length", c.headDim)]
            }
            keys += [try count("vocab_size", c.vocabSize), try count("rope.dimension_count", c.headDim)]
            return keys
        },
        huggingFaceConfig: { file in
            let c = try LlamaConfiguration(gguf: file)
            try c.validate()
            guard try c.ropeScaling() == .none else { throw ANELMError("converting a GGUF with RoPE scaling to a Hugging Face folder is not supported yet") }
            let modelType = c.modelType == "qwen2" ? "qwen2" : "llama"
            var config: JSONObject = [
                "architectures": [.string(modelType == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM")],
                "model_type": .string(modelType), "hidden_size": .int(c.hiddenSize), "intermediate_size": .int(c.intermediateSize),
                "num_hidden_layers": .int(c.numHiddenLayers), "num_attention_heads": .int(c.numAttentionHeads),
                "num_key_value_heads": .int(c.numKeyValueHeads), "head_dim": .int(c.headDim), "hidden_act": "silu",
                "rms_norm_eps": .double(Double(c.rmsNormEps)), "rope_theta": .double(Double(c.ropeTheta)), "vocab_size": .int(c.vocabSize),
                "max_position_embeddings": .int(c.maxPositionEmbeddings), "tie_word_embeddings": .bool(c.tieWordEmbeddings),
                "attention_bias": .bool(c.attentionBias), "mlp_bias": false,
            ]
            if let bos = file.int("tokenizer.ggml.bos_token_id") { config["bos_token_id"] = .int(bos) }
            if let eos = file.int("tokenizer.ggml.eos_token_id") { config["eos_token_id"] = .int(eos) }
            return config
        })

    /// xLSTM in anelm's own GGUF form (`XLSTMConfiguration.ggufKeys`): transformers' tensor names, nothing rearranged.
    static let xlstm = ModelConversion(
        tensorNames: { source in source.tensors.tensorNames.map { (huggingFace: $0, gguf: $0) } },
        reorder: { _, _, _, _, _ in },
        ggufMetadata: { folder in
            let c = try XLSTMConfiguration(.huggingFace(folder))
            try c.validate()
            return try c.ggufKeys
        },
        huggingFaceConfig: { file in
            let c = try XLSTMConfiguration(.gguf(file))
            try c.validate()
            var config = c.configFields
            config["architectures"] = ["xLSTMForCausalLM"]
            config["model_type"] = "xlstm"
            for (key, name) in [("bos_token_id", "bos"), ("eos_token_id", "eos"), ("pad_token_id", "padding")] {
                if let id = file.int("tokenizer.ggml.\(name)_token_id") { config[key] = .int(id) }
            }
            return config
        })

    /// llama.cpp's architecture for a Llama-family config.json `model_type`: Mistral is stored as `llama`.
    static func ggufArchitecture(llamaModelType: String) -> String { llamaModelType == "qwen2" ? "qwen2" : "llama" }
}

/// llama.cpp's q/k permutation: within each head, Hugging Face keeps the two rotated halves apart (rows
/// [x₀…x_{n/2}, y₀…y_{n/2}]); GGUF interleaves them (x₀, y₀, x₁, y₁, …).
func permuteRotaryRows(_ values: inout [Float], rows: Int, rowLength: Int, heads: Int, toGGUF: Bool) throws {
    guard heads > 0, rows % (2 * heads) == 0, values.count == rows * rowLength else {
        throw ANELMError("cannot permute \(rows) rows over \(heads) heads for RoPE (rows must be a multiple of 2 × heads)")
    }
    let half = rows / heads / 2
    let source = values
    for h in 0..<heads {
        for s in 0..<2 {
            for i in 0..<half {
                let huggingFaceRow = h * 2 * half + s * half + i
                let ggufRow = h * 2 * half + i * 2 + s
                let (from, to) = toGGUF ? (huggingFaceRow, ggufRow) : (ggufRow, huggingFaceRow)
                for k in 0..<rowLength { values[to * rowLength + k] = source[from * rowLength + k] }
            }
        }
    }
}
