import Foundation

/// xLSTM's hyper-parameters (transformers' `xLSTMConfig`, the xLSTM-7B "large" architecture). Keys are
/// config.json's. Kernel names, `mode` and dtypes only pick implementations of the same math in transformers, so
/// they are read for the record and not interpreted: anelm always computes the inference semantics in f32.
public struct XLSTMConfiguration: Decodable, Sendable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numHeads: Int
    public var useBias: Bool
    public var normEps: Float
    /// The mLSTM cell's denominator epsilon (`eps`).
    public var eps: Float
    public var qkDimFactor: Double
    public var vDimFactor: Double
    public var chunkSize: Int
    public var maxInferenceChunkSize: Int
    public var ffnProjFactor: Double
    public var ffnRoundUpToMultipleOf: Int
    /// nil: no cap (the original xlstm package allows it; transformers' config always has a number).
    public var gateSoftCap: Float?
    public var outputLogitSoftCap: Float?
    /// "single" (separate q/k/v/o/i/f and up/gate weights) or "fused".
    public var weightMode: String
    public var tieWordEmbeddings: Bool
    public var mode: String
    /// A block design of the config that anelm does not implement (nor lower to the ANE), named for the error:
    /// sLSTM blocks (`slstm_at`, the original xlstm package's mixed stacks) or its mLSTM v1 block (`mlstm_block`:
    /// up-projection with a causal conv, not the xLSTM-7B block). nil: mLSTM blocks of the 7B design only.
    public var unsupportedBlocks: String?

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case embeddingDim = "embedding_dim"
        case numHiddenLayers = "num_hidden_layers"
        case numBlocks = "num_blocks"
        case numHeads = "num_heads"
        case useBias = "use_bias"
        case normEps = "norm_eps"
        case eps
        case qkDimFactor = "qk_dim_factor"
        case vDimFactor = "v_dim_factor"
        case chunkSize = "chunk_size"
        case maxInferenceChunkSize = "max_inference_chunksize"
        case ffnProjFactor = "ffn_proj_factor"
        case ffnRoundUpToMultipleOf = "ffn_round_up_to_multiple_of"
        case gateSoftCap = "gate_soft_cap"
        case outputLogitSoftCap = "output_logit_soft_cap"
        case weightMode = "weight_mode"
        case tieWordEmbeddings = "tie_word_embeddings"
        case mode
        case slstmAt = "slstm_at"
        case mlstmBlock = "mlstm_block"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Defaults are xLSTMConfig's. hidden_size/num_hidden_layers and embedding_dim/num_blocks are aliases.
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 50304
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? c.decodeIfPresent(Int.self, forKey: .embeddingDim) ?? 4096
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? c.decodeIfPresent(Int.self, forKey: .numBlocks) ?? 32
        numHeads = try c.decodeIfPresent(Int.self, forKey: .numHeads) ?? 8
        useBias = try c.decodeIfPresent(Bool.self, forKey: .useBias) ?? false
        normEps = try c.decodeIfPresent(Float.self, forKey: .normEps) ?? 1e-6
        eps = try c.decodeIfPresent(Float.self, forKey: .eps) ?? 1e-6
        qkDimFactor = try c.decodeIfPresent(Double.self, forKey: .qkDimFactor) ?? 0.5
        vDimFactor = try c.decodeIfPresent(Double.self, forKey: .vDimFactor) ?? 1.0
        chunkSize = try c.decodeIfPresent(Int.self, forKey: .chunkSize) ?? 64
        maxInferenceChunkSize = try c.decodeIfPresent(Int.self, forKey: .maxInferenceChunkSize) ?? 16384
        ffnProjFactor = try c.decodeIfPresent(Double.self, forKey: .ffnProjFactor) ?? 2.667
        ffnRoundUpToMultipleOf = try c.decodeIfPresent(Int.self, forKey: .ffnRoundUpToMultipleOf) ?? 64
        gateSoftCap = c.contains(.gateSoftCap) ? try c.decodeIfPresent(Float.self, forKey: .gateSoftCap) : 15
        outputLogitSoftCap = c.contains(.outputLogitSoftCap) ? try c.decodeIfPresent(Float.self, forKey: .outputLogitSoftCap) : 30
        weightMode = try c.decodeIfPresent(String.self, forKey: .weightMode) ?? "single"
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        mode = try c.decodeIfPresent(String.self, forKey: .mode) ?? "inference"
        // slstm_at is a list of block indices or "all" in the xlstm package.
        if let all = try? c.decodeIfPresent(String.self, forKey: .slstmAt) {
            unsupportedBlocks = "sLSTM blocks (slstm_at = \"\(all)\")"
        } else if let at = try? c.decodeIfPresent([Int].self, forKey: .slstmAt), !at.isEmpty {
            unsupportedBlocks = "sLSTM blocks (slstm_at = \(at))"
        } else if c.contains(.slstmAt), (try? c.decodeNil(forKey: .slstmAt)) != true, (try? c.decode([Int].self, forKey: .slstmAt)) == nil {
            unsupportedBlocks = "sLSTM blocks (slstm_at of an unknown form)"
        } else if c.contains(.mlstmBlock), (try? c.decodeNil(forKey: .mlstmBlock)) != true {
            unsupportedBlocks = "mLSTM v1 blocks (mlstm_block: the xlstm package's up-projection block with a causal conv)"
        }
    }

    /// From config.json.
    public init(configJSON data: Data) throws {
        self = try decodeConfiguration(XLSTMConfiguration.self, from: data)
    }

    /// Width of all query (and of all key) heads: `int(hidden_size * qk_dim_factor)`, as the layer sizes it.
    public var qkDim: Int { Self.truncated(Double(hiddenSize) * qkDimFactor) }
    public var vDim: Int { Self.truncated(Double(hiddenSize) * vDimFactor) }
    public var qkHeadDim: Int { qkDim / max(numHeads, 1) }
    public var vHeadDim: Int { vDim / max(numHeads, 1) }
    /// The feed-forward width: `hidden_size * ffn_proj_factor` rounded up to `ffn_round_up_to_multiple_of`.
    public var ffnDim: Int {
        let multiple = Double(max(ffnRoundUpToMultipleOf, 1))
        return Self.truncated(((Double(hiddenSize) * ffnProjFactor + multiple - 1) / multiple).rounded(.down) * multiple)
    }

    /// Floats of one layer's recurrent state: per head C (qk × v), n (qk) and m (1).
    public var stateFloatsPerLayer: Int { numHeads * (qkHeadDim * vHeadDim + qkHeadDim + 1) }

    /// Python's `int(x)` for the sizes derived from factors; 0 for values no model has.
    private static func truncated(_ x: Double) -> Int {
        guard x.isFinite, x >= 0, x < Double(1 << 40) else { return 0 }
        return Int(x)
    }

    /// Checks what the forward pass relies on, so a bad file gives an error rather than a trap.
    public func validate() throws {
        func check(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            guard ok else { throw ANELMError("xLSTM configuration: \(message())") }
        }
        if let unsupportedBlocks {
            throw ANELMError("xLSTM configuration: \(unsupportedBlocks) are not supported; anelm runs and lowers the mLSTM blocks of the xLSTM-7B design only")
        }
        let limit = 1 << 20
        for (value, name) in [
            (vocabSize, "vocab_size"), (hiddenSize, "hidden_size"), (numHiddenLayers, "num_hidden_layers"),
            (numHeads, "num_heads"), (chunkSize, "chunk_size"), (maxInferenceChunkSize, "max_inference_chunksize"),
            (ffnRoundUpToMultipleOf, "ffn_round_up_to_multiple_of"),
        ] {
            try check(value > 0, "\(name) must be positive, got \(value)")
        }
        for (value, name) in [
            (vocabSize, "vocab_size"), (hiddenSize, "hidden_size"), (numHiddenLayers, "num_hidden_layers"), (numHeads, "num_heads"), (chunkSize, "chunk_size"),
        ] {
            try check(value <= limit, "\(name) = \(value) is implausibly large")
        }
        for (factor, name) in [(qkDimFactor, "qk_dim_factor"), (vDimFactor, "v_dim_factor"), (ffnProjFactor, "ffn_proj_factor")] {
            try check(factor.isFinite && factor > 0 && factor <= 64, "\(name) must be a positive number, got \(factor)")
        }
        for (dim, name) in [(qkDim, "qk"), (vDim, "v")] {
            try check(dim > 0, "hidden_size × \(name)_dim_factor is below 1")
            try check(dim % numHeads == 0, "the \(name) width \(dim) (hidden_size × \(name)_dim_factor) is not a multiple of num_heads (\(numHeads))")
        }
        try check(ffnDim > 0 && ffnDim <= 64 * limit, "feed-forward width \(ffnDim) is out of range")
        try check(weightMode == "single" || weightMode == "fused", "weight_mode must be 'single' or 'fused', got '\(weightMode)'")
        try check(normEps.isFinite && normEps >= 0, "norm_eps must be a non-negative number, got \(normEps)")
        try check(eps.isFinite && eps >= 0, "eps must be a non-negative number, got \(eps)")
        for (cap, name) in [(gateSoftCap, "gate_soft_cap"), (outputLogitSoftCap, "output_logit_soft_cap")] {
            if let cap { try check(cap.isFinite && cap > 0, "\(name) must be positive (or null), got \(cap)") }
        }
    }
}

extension XLSTMConfiguration: ModelConfiguration {
    /// From config.json, or from an xLSTM GGUF's `xlstm.*` keys (see `ggufKeys`).
    public init(_ source: ModelSource) throws {
        switch source {
        case .huggingFace(let folder): try self.init(configJSON: folder.configData)
        case .gguf(let file): try self.init(configJSON: Data(JSONValue.object(try Self.configJSON(gguf: file)).text.utf8))
        }
    }

    /// Every field, resolved, under config.json's keys (a soft cap that is off is null): what a converted folder's
    /// config.json holds.
    public var configFields: JSONObject {
        [
            "vocab_size": .int(vocabSize), "hidden_size": .int(hiddenSize), "num_hidden_layers": .int(numHiddenLayers), "num_heads": .int(numHeads),
            "use_bias": .bool(useBias), "norm_eps": .double(Double(normEps)), "eps": .double(Double(eps)), "qk_dim_factor": .double(qkDimFactor),
            "v_dim_factor": .double(vDimFactor), "chunk_size": .int(chunkSize), "max_inference_chunksize": .int(maxInferenceChunkSize),
            "ffn_proj_factor": .double(ffnProjFactor), "ffn_round_up_to_multiple_of": .int(ffnRoundUpToMultipleOf),
            "gate_soft_cap": gateSoftCap.map { .double(Double($0)) } ?? .null,
            "output_logit_soft_cap": outputLogitSoftCap.map { .double(Double($0)) } ?? .null, "weight_mode": .string(weightMode),
            "tie_word_embeddings": .bool(tieWordEmbeddings), "mode": .string(mode),
        ]
    }

    /// anelm's GGUF form of xLSTM (llama.cpp has none): `general.architecture` = `xlstm`, and each config.json field as
    /// `xlstm.<key>` (integers u32, numbers f64, booleans, strings); a soft cap that is off is left out. Tensors keep
    /// transformers' names.
    var ggufKeys: [(key: String, value: GGUFEncodedValue)] {
        get throws {
            var keys: [(key: String, value: GGUFEncodedValue)] = [("general.architecture", .string("xlstm"))]
            for (name, value) in configFields {
                let key = "xlstm.\(name)"
                switch value {
                case .int(let v): keys.append((key, try .count(v, key: key)))
                case .double(let v): keys.append((key, .float64(v)))
                case .bool(let v): keys.append((key, .bool(v)))
                case .string(let v): keys.append((key, .string(v)))
                default: continue  // null: a soft cap that is off
                }
            }
            return keys
        }
    }

    /// config.json's fields from an xLSTM GGUF's `xlstm.*` keys; the soft caps it leaves out are off.
    static func configJSON(gguf file: GGUFFile) throws -> JSONObject {
        guard file.string("general.architecture") == "xlstm" else {
            throw ANELMError("GGUF architecture \(quoted(file.string("general.architecture") ?? "?")) is not xlstm")
        }
        var config: JSONObject = ["gate_soft_cap": .null, "output_logit_soft_cap": .null]
        for key in file.metadataKeys where key.hasPrefix("xlstm.") {
            let name = String(key.dropFirst("xlstm.".count))
            switch file.metadata[key] {
            case .uint(let v)?: config[name] = .int(Int(clamping: v))
            case .int(let v)?: config[name] = .int(Int(clamping: v))
            case .float(let v)?: config[name] = .double(v)
            case .bool(let v)?: config[name] = .bool(v)
            case .string(let v)?: config[name] = .string(v)
            default: throw ANELMError("GGUF key \(key) is not a number, boolean or string")
            }
        }
        return config
    }

    public var summary: [(key: String, value: String)] {
        [
            ("layers", "\(numHiddenLayers) mLSTM blocks"), ("hidden size", "\(hiddenSize)"), ("feed-forward size", "\(ffnDim)"),
            ("heads", "\(numHeads) (query/key head dim: \(qkHeadDim), value head dim: \(vHeadDim))"),
            ("vocabulary", "\(vocabSize)"), ("context length", "unbounded (recurrent state)"),
            ("state per sequence", "\(numHiddenLayers * stateFloatsPerLayer * MemoryLayout<Float>.size) bytes (f32, fixed)"),
            ("soft-caps", "gates \(gateSoftCap.map { "\($0)" } ?? "none"), logits \(outputLogitSoftCap.map { "\($0)" } ?? "none")"),
            ("tied embeddings", tieWordEmbeddings ? "yes" : "no"),
        ]
    }
}
