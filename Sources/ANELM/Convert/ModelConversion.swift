import Foundation

/// What `anelm convert` needs to know of one family to move it between file formats: the tensor names in
/// each, how a tensor's rows are rearranged between them, and its hyper-parameters written as GGUF keys
/// (llama.cpp's, as its `convert_hf_to_gguf.py` writes them) or as config.json. Registered per family in
/// `ModelRegistry`; a re-quantization (GGUF to GGUF, folder to folder) needs none of it.
struct ModelConversion {
    /// (Hugging Face name, GGUF name) of every tensor the file may hold.
    let tensorNames: (ModelSource) throws -> [(huggingFace: String, gguf: String)]
    /// Changes a tensor named `ggufName` from Hugging Face's form to GGUF's (`toGGUF`) or back: rows rearranged, values shifted.
    let transform: (_ ggufName: String, _ values: inout [Float], _ shape: [Int], _ source: ModelSource, _ toGGUF: Bool) throws -> Void
    /// The family's GGUF metadata (`general.architecture` and the `<arch>.*` keys) from a Hugging Face folder.
    let ggufMetadata: (HFModelFolder) throws -> [(key: String, value: GGUFEncodedValue)]
    /// config.json from a GGUF file's metadata.
    let huggingFaceConfig: (GGUFFile) throws -> JSONObject
    /// 1-D f32 tensors a GGUF holds that a folder's config.json implies (llama.cpp's `generate_extra_tensors`), written first.
    var generatedTensors: (HFModelFolder) throws -> [(name: String, values: [Float])] = { _ in [] }
}

extension ModelConversion {
    /// The Llama family: llama.cpp stores q/k rows of `llama` models permuted so that RoPE rotates adjacent pairs.
    static let llama = ModelConversion(
        tensorNames: { source in
            let c = try LlamaConfiguration(source)
            if case .gguf(let file) = source, let factors = LlamaTensorNames.gguf.ropeFrequencies, file.tensorNames.contains(factors) {
                // Many (factor, low/high_freq_factor, original context) give the same factors: none can be named as the one.
                throw ANELMError(
                    "this GGUF has llama3 RoPE scaling as \(factors) (one divisor per frequency), from which config.json's rope_scaling "
                        + "(factor, low_freq_factor, high_freq_factor, original_max_position_embeddings) cannot be recovered exactly; "
                        + "convert the original Hugging Face folder instead")
            }
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
        transform: { name, values, shape, source, toGGUF in
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
            // llama3 scaling travels as the rope_freqs.weight tensor (`generatedTensors`), linear as keys.
            if case .linear(let factor) = try c.ropeScaling() {
                keys += [("\(arch).rope.scaling.type", .string("linear")), ("\(arch).rope.scaling.factor", .float32(factor))]
            }
            return keys
        },
        huggingFaceConfig: { file in
            let c = try LlamaConfiguration(gguf: file)
            try c.validate()
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
            if case .linear(let factor) = try c.ropeScaling() { config["rope_scaling"] = ["rope_type": "linear", "factor": .double(Double(factor))] }
            if let bos = file.int("tokenizer.ggml.bos_token_id") { config["bos_token_id"] = .int(bos) }
            if let eos = file.int("tokenizer.ggml.eos_token_id") { config["eos_token_id"] = .int(eos) }
            return config
        },
        generatedTensors: { folder in
            let c = try LlamaConfiguration(.huggingFace(folder))
            guard case .llama3(let factor, let low, let high, let original) = try c.ropeScaling(), let name = LlamaTensorNames.gguf.ropeFrequencies else {
                return []
            }
            let factors = llama3RopeFactors(
                theta: c.ropeTheta, headDim: c.headDim, factor: factor, lowFreqFactor: low, highFreqFactor: high, originalContext: original)
            return [(name, factors)]
        })

    /// xLSTM in anelm's own GGUF form (`XLSTMConfiguration.ggufKeys`): transformers' tensor names, nothing rearranged.
    static let xlstm = ModelConversion(
        tensorNames: { source in source.tensors.tensorNames.map { (huggingFace: $0, gguf: $0) } },
        transform: { _, _, _, _, _ in },
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

    /// Gemma 3 text as llama.cpp's `Gemma3Model` converts it: norms stored as the `1 + w` they multiply by, no q/k
    /// permutation. What llama.cpp's gemma3 fixes rather than reads (every 6th layer global, queries scaled by head_dim)
    /// is written only where a config departs from it, as keys anelm's reader honours (`Gemma3Configuration(gguf:)`).
    static let gemma3 = ModelConversion(
        tensorNames: { source in
            let c = try Gemma3Configuration(source)
            let hf = Gemma3TensorNames.huggingFace
            let gguf = Gemma3TensorNames.gguf
            var pairs = [(hf.embedding, gguf.embedding), (hf.outputNorm, gguf.outputNorm), (hf.output, gguf.output)]
            for i in 0..<c.numHiddenLayers {
                let h = hf.layer(i)
                let g = gguf.layer(i)
                pairs += [
                    (h.inputNorm, g.inputNorm), (h.postAttentionNorm, g.postAttentionNorm), (h.preFeedforwardNorm, g.preFeedforwardNorm),
                    (h.postFeedforwardNorm, g.postFeedforwardNorm), (h.q, g.q), (h.k, g.k), (h.v, g.v), (h.o, g.o), (h.qBias, g.qBias),
                    (h.kBias, g.kBias), (h.vBias, g.vBias), (h.oBias, g.oBias), (h.qNorm, g.qNorm), (h.kNorm, g.kNorm), (h.gate, g.gate),
                    (h.up, g.up), (h.down, g.down),
                ]
            }
            return pairs.map { (huggingFace: $0.0, gguf: $0.1) }
        },
        transform: { name, values, _, _, toGGUF in
            // `Gemma3RMSNorm` multiplies by 1 + w in f32; added in f32 here (llama.cpp adds in the source dtype), so a
            // GGUF's factors are the folder's exactly, and subtracting restores the folder's weights.
            guard name.hasSuffix("norm.weight") else { return }
            let shift: Float = toGGUF ? 1 : -1
            for i in values.indices { values[i] += shift }
        },
        ggufMetadata: { folder in
            let c = try Gemma3Configuration(.huggingFace(folder))
            try c.validate()
            guard c.hiddenActivation != "gelu" else {
                throw ANELMError("GGUF gemma3 has no key for the activation (llama.cpp runs GELU-tanh); this config's hidden_activation is gelu (erf)")
            }
            func count(_ key: String, _ v: Int) throws -> (key: String, value: GGUFEncodedValue) { ("gemma3.\(key)", try .count(v, key: key)) }
            var keys: [(key: String, value: GGUFEncodedValue)] = [
                ("general.architecture", .string("gemma3")),
                try count("block_count", c.numHiddenLayers), try count("context_length", c.maxPositionEmbeddings),
                try count("embedding_length", c.hiddenSize), try count("feed_forward_length", c.intermediateSize),
                try count("attention.head_count", c.numAttentionHeads), try count("attention.head_count_kv", c.numKeyValueHeads),
                try count("attention.key_length", c.headDim), try count("attention.value_length", c.headDim),
                ("gemma3.attention.layer_norm_rms_epsilon", .float32(c.rmsNormEps)), ("gemma3.rope.freq_base", .float32(c.ropeTheta)),
                ("gemma3.rope.freq_base_swa", .float32(c.ropeLocalBaseFreq)), try count("attention.sliding_window", c.slidingWindow),
            ]
            switch c.ropeScaling {
            case .none: break
            case .linear(let factor): keys += [("gemma3.rope.scaling.type", .string("linear")), ("gemma3.rope.scaling.factor", .float32(factor))]
            case .llama3: throw ANELMError("Gemma 3 with llama3 RoPE scaling has no GGUF form (llama.cpp's gemma3 takes linear scaling only)")
            }
            // attn_logit_softcapping is not written: transformers' Gemma 3 attention and llama.cpp's gemma3 graph never apply it.
            if let cap = c.finalLogitSoftcapping { keys.append(("gemma3.final_logit_softcapping", .float32(cap))) }
            if c.layerTypes != Gemma3Configuration.layerTypes(layers: c.numHiddenLayers, pattern: 6) {
                keys.append(("gemma3.attention.sliding_window_pattern", .bools(c.layerTypes.map { $0 == .slidingAttention })))
            }
            let assumedScalar = Gemma3Configuration.llamaCppQueryScalar(
                layers: c.numHiddenLayers, hidden: c.hiddenSize, heads: c.numAttentionHeads, headDim: c.headDim)
            if c.queryPreAttnScalar != assumedScalar {
                keys.append(("gemma3.attention.scale", .float32(1 / c.queryPreAttnScalar.squareRoot())))
            }
            return keys
        },
        huggingFaceConfig: { file in
            let c = try Gemma3Configuration(gguf: file)
            try c.validate()
            func number(_ v: Float) -> JSONValue { .double(Double("\(v)") ?? Double(v)) }  // 1e-06, not 9.99999997e-07
            var global: JSONObject = ["rope_type": "default", "rope_theta": number(c.ropeTheta)]
            if case .linear(let factor) = c.ropeScaling {
                global["rope_type"] = "linear"
                global["factor"] = number(factor)
            }
            var config: JSONObject = [
                "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": .int(c.hiddenSize),
                "intermediate_size": .int(c.intermediateSize), "num_hidden_layers": .int(c.numHiddenLayers),
                "num_attention_heads": .int(c.numAttentionHeads), "num_key_value_heads": .int(c.numKeyValueHeads), "head_dim": .int(c.headDim),
                "rms_norm_eps": number(c.rmsNormEps), "vocab_size": .int(c.vocabSize), "max_position_embeddings": .int(c.maxPositionEmbeddings),
                "tie_word_embeddings": .bool(c.tieWordEmbeddings), "attention_bias": .bool(c.attentionBias),
                // transformers checks it is an int (Gemma's are whole numbers).
                "query_pre_attn_scalar": c.queryPreAttnScalar.rounded() == c.queryPreAttnScalar
                    ? .int(Int(c.queryPreAttnScalar)) : number(c.queryPreAttnScalar),
                "sliding_window": .int(c.slidingWindow),
                "layer_types": .array(c.layerTypes.map { .string($0.rawValue) }),
                "rope_parameters": [
                    "full_attention": .object(global), "sliding_attention": ["rope_type": "default", "rope_theta": number(c.ropeLocalBaseFreq)],
                ],
                "final_logit_softcapping": c.finalLogitSoftcapping.map(number) ?? .null, "attn_logit_softcapping": nil,
                "hidden_activation": .string(c.hiddenActivation), "use_bidirectional_attention": false,
            ]
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

/// llama.cpp's `rope_freqs.weight` for llama3 RoPE scaling: per frequency, the divisor that turns the unscaled
/// frequency into the scaled one, computed in f32 step by step as `convert_hf_to_gguf.py` computes it with torch
/// (its `old_context_len` is read from the config's top level, where Llama 3.x has none, so it takes 8192, each
/// release's value; the one in rope_scaling is taken here, which is what transformers uses).
func llama3RopeFactors(theta: Float, headDim: Int, factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalContext: Int) -> [Float] {
    let context = Float(originalContext)
    let lowWavelength = Double(originalContext) / Double(lowFreqFactor)
    let highWavelength = Double(originalContext) / Double(highFreqFactor)
    let band = Float(Double(highFreqFactor) - Double(lowFreqFactor))
    return stride(from: 0, to: headDim, by: 2).map { i -> Float in
        let frequency = 1 / powf(theta, Float(i) / Float(headDim))
        let wavelength = Float(2 * Double.pi) / frequency
        if wavelength < Float(highWavelength) { return 1 }
        if wavelength > Float(lowWavelength) { return factor }
        let smooth = (context / wavelength - lowFreqFactor) / band
        return 1 / ((1 - smooth) / factor + smooth)
    }
}
