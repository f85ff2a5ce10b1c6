import Foundation

/// Building a `LlamaModel` from each file format.
extension LlamaModel {
    static func load(_ source: ModelSource, _ options: LoadOptions, _ pool: ThreadPool) throws -> LanguageModel {
        var config = try LlamaConfiguration(source)
        config.maxPositionEmbeddings = try options.contextLength(cappedAt: config.maxPositionEmbeddings)
        let names: LlamaTensorNames
        let style: RoPEStyle
        switch source {
        case .gguf:
            names = .gguf
            style = ggufPermutesQueryKey(source, config) ? .adjacent : .halves
        case .huggingFace:
            names = .huggingFace
            style = .halves
        }
        let lora = try options.loraBinder(source, names: loraTargets(source), pool: pool)
        return try LlamaModel(
            configuration: config, store: source.tensors, names: names, ropeStyle: style, precision: options.precision, lora: lora, pool: pool)
    }
}

extension LlamaModel {
    /// Whether llama.cpp's converter permutes q/k of this model so that RoPE pairs adjacent dims (`llama`, not `qwen2`).
    static func ggufPermutesQueryKey(_ source: ModelSource, _ config: LlamaConfiguration) -> Bool {
        switch source {
        case .gguf(let file): return file.string("general.architecture") != "qwen2"
        case .huggingFace: return config.modelType != "qwen2"
        }
    }

    /// The weights of `source` LoRA adapters may adapt, in both formats.
    static func loraTargets(_ source: ModelSource) throws -> LoRATargetNames {
        let config = try LlamaConfiguration(source)
        return LlamaTensorNames.loraTargets(config, ggufPermutes: ggufPermutesQueryKey(source, config))
    }
}

extension LlamaConfiguration: ModelConfiguration {
    /// From config.json or GGUF metadata, whichever `source` is.
    public init(_ source: ModelSource) throws {
        switch source {
        case .gguf(let file): try self.init(gguf: file)
        case .huggingFace(let folder): try self.init(configJSON: folder.configData)
        }
    }

    /// From config.json.
    public init(configJSON data: Data) throws {
        self = try decodeConfiguration(LlamaConfiguration.self, from: data)
    }

    /// From GGUF metadata (`<arch>.*` keys), as llama.cpp writes them.
    public init(gguf file: GGUFFile) throws {
        let p = try GGUFHyperParameters(file)
        self.init(
            modelType: p.architecture, hiddenSize: try p.hiddenSize, intermediateSize: try p.int("feed_forward_length"),
            numHiddenLayers: try p.int("block_count"), numAttentionHeads: try p.attentionHeads,
            numKeyValueHeads: try p.keyValueHeads, headDim: try p.headDim,
            rmsNormEps: try p.positiveFloat("attention.layer_norm_rms_epsilon") ?? 1e-5,
            ropeTheta: try p.positiveFloat("rope.freq_base") ?? 10000, vocabSize: p.vocabularySize,
            maxPositionEmbeddings: try p.int("context_length"), tieWordEmbeddings: p.tiesEmbeddings,
            attentionBias: p.hasAttentionBias, ropeScaling: try p.ropeScaling)
    }

    public var summary: [(key: String, value: String)] {
        [
            ("layers", "\(numHiddenLayers)"), ("hidden size", "\(hiddenSize)"), ("feed-forward size", "\(intermediateSize)"),
            ("attention heads", "\(numAttentionHeads) (key/value heads: \(numKeyValueHeads), head dim: \(headDim))"),
            ("vocabulary", "\(vocabSize)"), ("context length", "\(maxPositionEmbeddings)"), ("rope theta", "\(ropeTheta)"),
            ("tied embeddings", tieWordEmbeddings ? "yes" : "no"),
            ("KV cache per token", "\(2 * numHiddenLayers * numKeyValueHeads * headDim * 2) bytes (f16)"),
        ]
    }
}

/// A configuration decoded from config.json, a decoding failure turned into one line: which key, what was wrong.
func decodeConfiguration<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
    do {
        return try JSONDecoder().decode(T.self, from: data)
    } catch let error as DecodingError {
        throw ANELMError("config.json: \(describe(error))")
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
