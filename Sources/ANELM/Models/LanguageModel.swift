/// What generation needs from a model: run tokens through it, get logits back.
/// Transformer models keep a KV cache in their state; recurrent models keep a fixed-size state.
public protocol LanguageModel: AnyObject {
    var vocabularySize: Int { get }
    /// The longest sequence the model accepts (prompt plus generated tokens).
    var contextLength: Int { get }
    /// A fresh, empty state for one sequence.
    func makeState() -> ModelState
    /// A fresh, empty state for one sequence of at most `contextLength` tokens (≤ the model's): it never
    /// grows past the memory of that many.
    func makeState(contextLength: Int) -> ModelState
    /// Runs `tokens` at the positions following those already in `state`, appends them to it, and
    /// returns logits: `vocabularySize` floats for the last token, or for every token in order when
    /// `allPositions` is set.
    func forward(_ tokens: [Int], state: ModelState, allPositions: Bool) throws -> [Float]
    /// Runs several sequences in one pass — each with its own tokens and state, e.g. one token of a sequence
    /// that is decoding next to a chunk of one still reading its prompt — and returns each sequence's logits
    /// as `forward` would. Each state appears once.
    func forward(batch: [(tokens: [Int], state: ModelState)], allPositions: Bool) throws -> [[Float]]
    /// The LoRA adapters loaded with the model (`LoadOptions.lora`); nil without any.
    var adapters: LoRAAdapterTable? { get }
    /// As `forward(batch:allPositions: false)`, but only the sequences whose `wantsLogits` is set get their last
    /// token's logits; the others get an empty array (a chunk of a prompt that goes on needs no output layer).
    func forward(batch: [(tokens: [Int], state: ModelState)], wantsLogits: [Bool]) throws -> [[Float]]
}

extension LanguageModel {
    /// One pass per sequence, for models that have no batched pass.
    public func forward(batch: [(tokens: [Int], state: ModelState)], allPositions: Bool) throws -> [[Float]] {
        try batch.map { try forward($0.tokens, state: $0.state, allPositions: allPositions) }
    }

    public var adapters: LoRAAdapterTable? { nil }

    public func forward(batch: [(tokens: [Int], state: ModelState)], wantsLogits: [Bool]) throws -> [[Float]] {
        guard wantsLogits.count == batch.count else { throw ANELMError("forward got \(wantsLogits.count) logits flags for \(batch.count) sequences") }
        return zip(try forward(batch: batch, allPositions: false), wantsLogits).map { $1 ? $0 : [] }
    }

    /// States whose size does not follow the sequence (recurrent models) ignore the length.
    public func makeState(contextLength: Int) -> ModelState { makeState() }
}

/// The per-sequence memory of a model.
public protocol ModelState: AnyObject {
    /// Tokens processed so far.
    var count: Int { get }
    /// Forgets every position from `count` on, so a shared prefix can be kept (prompt cache).
    func truncate(to count: Int) throws
    /// Bytes held by this state.
    var byteSize: Int { get }
    /// The LoRA scale per adapter id this sequence runs with (what its cached positions were computed with).
    var loraScales: [Float] { get set }
    /// Bytes this state holds at its longest (a KV cache grows with the sequence; a recurrent state does not).
    var maximumByteSize: Int { get }
}

extension ModelState {
    public var maximumByteSize: Int { byteSize }

    /// States of models that take no adapters keep none.
    public var loraScales: [Float] {
        get { [] }
        set {}
    }
}

/// Checks one sequence's new tokens: at least one, every id inside the vocabulary.
func checkTokens(_ tokens: [Int], vocabularySize: Int) throws {
    guard !tokens.isEmpty else { throw ANELMError("forward needs at least one token") }
    if let bad = tokens.first(where: { $0 < 0 || $0 >= vocabularySize }) {
        throw ANELMError("token id \(bad) is outside the vocabulary of \(vocabularySize)")
    }
}

/// A batched pass's logits cut into one run per sequence: `rows[i]` rows of `vocabularySize` for sequence i.
func splitLogits(_ logits: [Float], rows: [Int], vocabularySize: Int) -> [[Float]] {
    var start = 0
    return rows.map { count in
        defer { start += count * vocabularySize }
        return Array(logits[start..<(start + count * vocabularySize)])
    }
}
