/// What generation needs from a model: run tokens through it, get logits back.
/// Transformer models keep a KV cache in their state; recurrent models keep a fixed-size state.
public protocol LanguageModel: AnyObject {
    var vocabularySize: Int { get }
    /// The longest sequence the model accepts (prompt plus generated tokens).
    var contextLength: Int { get }
    /// A fresh, empty state for one sequence.
    func makeState() -> ModelState
    /// Runs `tokens` at the positions following those already in `state`, appends them to it, and
    /// returns logits: `vocabularySize` floats for the last token, or for every token in order when
    /// `allPositions` is set.
    func forward(_ tokens: [Int], state: ModelState, allPositions: Bool) throws -> [Float]
}

/// The per-sequence memory of a model.
public protocol ModelState: AnyObject {
    /// Tokens processed so far.
    var count: Int { get }
    /// Forgets every position from `count` on, so a shared prefix can be kept (prompt cache).
    func truncate(to count: Int) throws
    /// Bytes held by this state.
    var byteSize: Int { get }
}
