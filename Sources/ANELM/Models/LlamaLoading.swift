import Foundation

/// Building a `LlamaModel` from each file format.
extension LlamaModel {
    static func load(_ source: ModelSource, _ options: LoadOptions, _ pool: ThreadPool) throws -> LanguageModel {
        var config: LlamaConfiguration
        let store: TensorStore, names: LlamaTensorNames, style: RoPEStyle
        switch source {
        case .gguf(let file):
            config = try LlamaConfiguration(gguf: file)
            store = file
            names = .gguf
            // llama.cpp's converter permutes q/k of `llama` models so that RoPE pairs adjacent dims.
            style = file.string("general.architecture") == "qwen2" ? .halves : .adjacent
        case .huggingFace(let folder):
            config = try LlamaConfiguration(configJSON: folder.configData)
            store = folder.tensors
            names = .huggingFace
            style = .halves
        }
        if let limit = options.contextLength {
            guard limit > 0 else { throw ANELMError("context length must be positive, got \(limit)") }
            config.maxPositionEmbeddings = min(config.maxPositionEmbeddings, limit)
        }
        return try LlamaModel(configuration: config, store: store, names: names, ropeStyle: style, precision: options.precision, pool: pool)
    }
}

extension LlamaConfiguration {
    /// From config.json.
    public init(configJSON data: Data) throws {
        do {
            self = try JSONDecoder().decode(LlamaConfiguration.self, from: data)
        } catch let error as DecodingError {
            throw ANELMError("config.json: \(describe(error))")
        }
    }

    /// From GGUF metadata (`<arch>.*` keys), as llama.cpp writes them.
    public init(gguf file: GGUFFile) throws {
        guard let arch = file.string("general.architecture") else { throw ANELMError("GGUF file has no general.architecture") }
        func int(_ key: String) throws -> Int {
            guard let v = file.int("\(arch).\(key)") else { throw ANELMError("GGUF metadata lacks \(arch).\(key)") }
            return v
        }
        let hidden = try int("embedding_length")
        let heads = try int("attention.head_count")
        let headDim = file.int("\(arch).attention.key_length") ?? (heads > 0 ? hidden / heads : 0)
        if let rotary = file.int("\(arch).rope.dimension_count"), rotary != headDim {
            throw ANELMError("partial rotary embeddings (\(rotary) of \(headDim) dims) are not supported")
        }
        let vocab = file.int("\(arch).vocab_size") ?? file.arrayCount("tokenizer.ggml.tokens") ?? 0
        var scaling = RoPEScaling.none
        if let type = file.string("\(arch).rope.scaling.type"), type != "none" {
            let factor = Float(file.double("\(arch).rope.scaling.factor") ?? 1)
            guard type == "linear" else { throw ANELMError("GGUF rope scaling '\(type)' is not supported") }
            scaling = .linear(factor: factor)
        }
        self.init(
            modelType: arch, hiddenSize: hidden, intermediateSize: try int("feed_forward_length"),
            numHiddenLayers: try int("block_count"), numAttentionHeads: heads,
            numKeyValueHeads: file.int("\(arch).attention.head_count_kv") ?? heads, headDim: headDim,
            rmsNormEps: Float(file.double("\(arch).attention.layer_norm_rms_epsilon") ?? 1e-5),
            ropeTheta: Float(file.double("\(arch).rope.freq_base") ?? 10000), vocabSize: vocab,
            maxPositionEmbeddings: try int("context_length"),
            tieWordEmbeddings: !file.tensorNames.contains("output.weight"),
            attentionBias: file.tensorNames.contains("blk.0.attn_q.bias"), ropeScaling: scaling)
    }
}

/// One line for a JSON decoding failure: which key, what was wrong.
func describe(_ error: DecodingError) -> String {
    func path(_ context: DecodingError.Context) -> String { context.codingPath.map(\.stringValue).joined(separator: ".") }
    switch error {
    case .keyNotFound(let key, _): return "missing key '\(key.stringValue)'"
    case .typeMismatch(_, let c), .valueNotFound(_, let c): return "bad value at '\(path(c))': \(c.debugDescription)"
    case .dataCorrupted(let c): return "invalid JSON\(path(c).isEmpty ? "" : " at '\(path(c))'"): \(c.debugDescription)"
    @unknown default: return "\(error)"
    }
}
