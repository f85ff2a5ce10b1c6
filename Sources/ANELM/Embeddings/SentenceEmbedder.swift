import Foundation

/// How token states become one vector: sentence-transformers' `Pooling` module (`1_Pooling/config.json`).
public enum Pooling: String, Sendable {
    /// The average over the sequence's tokens, special tokens included (sentence-transformers' attention mask).
    case mean
    /// The first token's state (`[CLS]`).
    case cls
    /// The largest value of each dimension over the tokens.
    case max
    /// The sum over the tokens divided by √length.
    case meanSqrtLength

    /// From the Pooling module's config.json: sentence-transformers ≥ 6 writes `pooling_mode` ("mean"), earlier
    /// versions one `pooling_mode_*` flag per mode; exactly one mode may be on.
    init(_ json: JSONNode, hiddenSize: Int) throws {
        let dimensionKey = json.isNull("embedding_dimension") ? "word_embedding_dimension" : "embedding_dimension"
        let dimension = try json.int(dimensionKey)
        guard dimension == hiddenSize else {
            throw json.member(dimensionKey).error("pooling over \(dimension) dimensions, but the model's hidden size is \(hiddenSize)")
        }
        let modes: [(name: String, flag: String, mode: Pooling?)] = [
            ("mean", "pooling_mode_mean_tokens", .mean), ("cls", "pooling_mode_cls_token", .cls), ("max", "pooling_mode_max_tokens", .max),
            ("mean_sqrt_len_tokens", "pooling_mode_mean_sqrt_len_tokens", .meanSqrtLength), ("weightedmean", "pooling_mode_weightedmean_tokens", nil),
            ("lasttoken", "pooling_mode_lasttoken", nil),
        ]
        var chosen: [(name: String, flag: String, mode: Pooling?)] = []
        if let name = try json.optionalString("pooling_mode") {
            guard let known = modes.first(where: { $0.name == name }) else { throw json.member("pooling_mode").error("unknown pooling mode \(quoted(name))") }
            chosen = [known]
        } else {
            for entry in modes where try json.bool(entry.flag, default: false) { chosen.append(entry) }
        }
        guard chosen.count == 1, let only = chosen.first else {
            throw json.error("expected exactly one pooling mode, found \(chosen.isEmpty ? "none" : chosen.map(\.name).joined(separator: ", "))")
        }
        guard let mode = only.mode else { throw json.error("pooling mode \(only.name) is not supported (supported: mean, cls, max, mean_sqrt_len_tokens)") }
        if let include = try json.optionalBool("include_prompt"), !include { throw json.error("include_prompt: false is not supported") }
        self = mode
    }

    /// One vector of `width` from `rows` token states (row-major).
    public func pool(_ states: [Float], rows: Int, width: Int) -> [Float] {
        var out = [Float](repeating: self == .max ? -.infinity : 0, count: width)
        switch self {
        case .cls:
            out = Array(states[0..<width])
        case .max:
            for r in 0..<rows { for i in 0..<width { out[i] = Swift.max(out[i], states[r * width + i]) } }
        case .mean, .meanSqrtLength:
            for r in 0..<rows { for i in 0..<width { out[i] += states[r * width + i] } }
            let divisor = self == .mean ? Float(rows) : Float(rows).squareRoot()
            for i in 0..<width { out[i] /= divisor }
        }
        return out
    }
}

/// A text ready for the encoder: its tokens with the special ones, cut to the model's limit.
public struct EmbeddingInput: Sendable {
    public let tokens: [Int]
    /// Tokens the text had (special tokens included) before truncation.
    public let originalTokenCount: Int
    public var truncated: Bool { originalTokenCount > tokens.count }
}

/// A sentence-transformers pipeline (modules.json): the encoder, a pooling, an optional L2 normalization.
public final class SentenceEmbedder: TextEmbedder {
    public let identifier: String
    public let dimensions: Int
    public let maxSequenceLength: Int
    public let tokenizer: Tokenizer
    public let pooling: Pooling
    /// Whether vectors are L2-normalized (a `Normalize` module).
    public let normalizes: Bool
    let encoder: EncoderModel
    /// sentence_bert_config.json's `do_lower_case`: texts lowercased before the tokenizer sees them.
    let lowercasesInput: Bool
    /// Rows (tokens) per encoder pass at most: bounds the activations of a large request.
    static let rowsPerPass = 4096

    init(
        identifier: String, encoder: EncoderModel, tokenizer: Tokenizer, pooling: Pooling, normalizes: Bool, maxSequenceLength: Int,
        lowercasesInput: Bool
    ) throws {
        guard maxSequenceLength > tokenizer.addedTokenCount else {
            throw ANELMError("max_seq_length \(maxSequenceLength) leaves no room for text next to \(tokenizer.addedTokenCount) special tokens")
        }
        self.identifier = identifier
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalizes = normalizes
        self.maxSequenceLength = maxSequenceLength
        self.lowercasesInput = lowercasesInput
        dimensions = encoder.hiddenSize
    }

    public func tokenCount(of text: String) throws -> Int { tokenizer.encode(prepared(text), addSpecialTokens: false).count }

    /// The text's tokens as sentence-transformers makes them: the tokenizer's, cut to `maxSequenceLength`
    /// with the special tokens kept (truncation "longest_first" of one sequence keeps its start).
    public func input(_ text: String) -> EmbeddingInput {
        input(tokens: tokenizer.encode(prepared(text), addSpecialTokens: false))
    }

    /// Token ids given directly (the model's vocabulary, without special tokens), cut the same way.
    public func input(tokenIds ids: [Int]) throws -> EmbeddingInput {
        if let bad = ids.first(where: { $0 < 0 || $0 >= encoder.vocabularySize }) {
            throw ANELMError("token id \(bad) is outside the vocabulary of \(encoder.vocabularySize)")
        }
        return input(tokens: ids)
    }

    private func input(tokens ids: [Int]) -> EmbeddingInput {
        let room = maxSequenceLength - tokenizer.addedTokenCount
        return EmbeddingInput(tokens: tokenizer.addingSpecialTokens(Array(ids.prefix(room))), originalTokenCount: ids.count + tokenizer.addedTokenCount)
    }

    private func prepared(_ text: String) -> String {
        guard lowercasesInput else { return text }
        var lowered = String.UnicodeScalarView()
        for scalar in text.unicodeScalars { lowered.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars) }
        return String(lowered)
    }

    public func embed(_ texts: [String]) throws -> [[Float]] { try embed(texts.map(input)) }

    /// One vector per input, in order; inputs are run in passes of at most `rowsPerPass` tokens.
    public func embed(_ inputs: [EmbeddingInput]) throws -> [[Float]] {
        var vectors: [[Float]] = []
        vectors.reserveCapacity(inputs.count)
        var start = 0
        while start < inputs.count {
            var end = start
            var rows = 0
            while end < inputs.count && (end == start || rows + inputs[end].tokens.count <= Self.rowsPerPass) {
                rows += inputs[end].tokens.count
                end += 1
            }
            let states = try encoder.encode(inputs[start..<end].map(\.tokens))
            for (input, state) in zip(inputs[start..<end], states) {
                var vector = pooling.pool(state, rows: input.tokens.count, width: dimensions)
                if normalizes { Self.normalize(&vector) }
                vectors.append(vector)
            }
            start = end
        }
        return vectors
    }

    /// L2 normalization as torch's `F.normalize`: divided by max(‖v‖, 1e-12).
    static func normalize(_ v: inout [Float]) {
        var squares: Float = 0
        for x in v { squares += x * x }
        let norm = Swift.max(squares.squareRoot(), 1e-12)
        for i in v.indices { v[i] /= norm }
    }
}
