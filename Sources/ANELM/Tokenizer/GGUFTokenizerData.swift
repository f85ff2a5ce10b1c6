/// Tokenizer settings as GGUF stores them (`tokenizer.ggml.*`).
public struct GGUFTokenizerData: Sendable {
    /// `tokenizer.ggml.model`: "gpt2" means byte-level BPE, "llama" SentencePiece.
    public var model: String
    /// `general.architecture`: transformers picks the SentencePiece variant by it ("gemma3", …).
    public var architecture: String?
    /// `tokenizer.ggml.pre`: which split regex the merges were learned with ("smollm", "llama-bpe", "qwen2", …).
    public var preTokenizer: String?
    /// The vocabulary, indexed by token id, spelled as stored.
    public var tokens: [String]
    /// BPE merges as "left right" strings, best first.
    public var merges: [String]
    /// `tokenizer.ggml.scores`: SentencePiece piece scores, one per token.
    public var scores: [Float]?
    /// Per-token type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    public var tokenTypes: [Int]
    /// Ids of the named special tokens, when the file gives them.
    public var bosTokenId: Int?, eosTokenId: Int?, padTokenId: Int?, unknownTokenId: Int?
    /// Whether encoding adds BOS / EOS (`tokenizer.ggml.add_bos_token`, `add_eos_token`).
    public var addBosToken: Bool?, addEosToken: Bool?
    /// `tokenizer.ggml.add_space_prefix`: whether SentencePiece puts "▁" before the text (false for Gemma).
    public var addSpacePrefix: Bool?
    /// `tokenizer.chat_template`, a Jinja template.
    public var chatTemplate: String?

    /// Memberwise initializer.
    public init(
        model: String, preTokenizer: String? = nil, tokens: [String], merges: [String], tokenTypes: [Int] = [],
        bosTokenId: Int? = nil, eosTokenId: Int? = nil, padTokenId: Int? = nil, unknownTokenId: Int? = nil,
        addBosToken: Bool? = nil, addEosToken: Bool? = nil, chatTemplate: String? = nil,
        architecture: String? = nil, scores: [Float]? = nil, addSpacePrefix: Bool? = nil
    ) {
        self.architecture = architecture
        self.scores = scores
        self.addSpacePrefix = addSpacePrefix
        self.model = model
        self.preTokenizer = preTokenizer
        self.tokens = tokens
        self.merges = merges
        self.tokenTypes = tokenTypes
        self.bosTokenId = bosTokenId
        self.eosTokenId = eosTokenId
        self.padTokenId = padTokenId
        self.unknownTokenId = unknownTokenId
        self.addBosToken = addBosToken
        self.addEosToken = addEosToken
        self.chatTemplate = chatTemplate
    }
}
