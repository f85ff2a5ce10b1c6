import Foundation

/// A transformer's hyper-parameters as llama.cpp writes them in GGUF metadata (`<arch>.*` keys), read
/// once for every family: required keys are errors when missing, numbers are checked to be finite and
/// in range, and what anelm does not run (partial rotary embeddings, unknown RoPE scaling) is refused.
struct GGUFHyperParameters {
    let file: GGUFFile
    /// `general.architecture`: the prefix of every key.
    let architecture: String

    init(_ file: GGUFFile) throws {
        guard let architecture = file.string("general.architecture") else { throw ANELMError("GGUF file has no general.architecture") }
        self.file = file
        self.architecture = architecture
    }

    /// A required integer.
    func int(_ key: String) throws -> Int {
        guard let v = file.int("\(architecture).\(key)") else { throw ANELMError("GGUF metadata lacks \(architecture).\(key)") }
        return v
    }

    func optionalInt(_ key: String) -> Int? { file.int("\(architecture).\(key)") }

    /// An optional float, which must be finite and positive when present.
    func positiveFloat(_ key: String) throws -> Float? {
        guard let v = file.double("\(architecture).\(key)") else { return nil }
        guard v.isFinite, v > 0, v < Double(Float.greatestFiniteMagnitude) else {
            throw ANELMError("GGUF metadata \(architecture).\(key) must be a finite positive number, got \(v)")
        }
        return Float(v)
    }

    var hiddenSize: Int { get throws { try int("embedding_length") } }
    var attentionHeads: Int { get throws { try int("attention.head_count") } }
    var keyValueHeads: Int { get throws { try optionalInt("attention.head_count_kv") ?? attentionHeads } }

    /// `attention.key_length`, else hidden / heads; the rotary dimension count must cover the whole head.
    var headDim: Int {
        get throws {
            let heads = try attentionHeads
            let hidden = try hiddenSize
            let headDim = optionalInt("attention.key_length") ?? (heads > 0 ? hidden / heads : 0)
            if let rotary = optionalInt("rope.dimension_count"), rotary != headDim {
                throw ANELMError("partial rotary embeddings (\(rotary) of \(headDim) dims) are not supported")
            }
            return headDim
        }
    }

    /// The vocabulary: `<arch>.vocab_size`, else the tokenizer's token count.
    var vocabularySize: Int { optionalInt("vocab_size") ?? file.arrayCount("tokenizer.ggml.tokens") ?? 0 }

    /// `rope.scaling.type`: none or linear (the others are not written by llama.cpp's converters for these families).
    var ropeScaling: RoPEScaling {
        get throws {
            guard let type = file.string("\(architecture).rope.scaling.type"), type != "none" else { return .none }
            guard type == "linear" else { throw ANELMError("GGUF rope scaling '\(type)' is not supported") }
            return .linear(factor: try positiveFloat("rope.scaling.factor") ?? 1)
        }
    }

    /// The output head is the embedding table when the file has no `output.weight`.
    var tiesEmbeddings: Bool { !file.tensorNames.contains("output.weight") }
    var hasAttentionBias: Bool { file.tensorNames.contains("blk.0.attn_q.bias") }
}
