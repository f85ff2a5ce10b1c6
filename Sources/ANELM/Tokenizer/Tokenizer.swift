import Foundation

/// Text ↔ token ids, the Hugging Face pipeline (normalizer, pre-tokenizer, BPE, post-processor, decoder).
public final class Tokenizer: @unchecked Sendable {
    private let normalizer: Normalizer?
    private let preTokenizer: PreTokenizer?
    private let model: any SubwordModel
    private let postProcessor: PostProcessor?
    private let decoder: TokenDecoder
    /// Added tokens matched on the raw input, then on normalized text.
    private let rawMatcher: AddedTokenMatcher
    private let normalizedMatcher: AddedTokenMatcher
    /// Special tokens by their texts as written, to find them in message content.
    private let specialTokenFinder: AddedTokenMatcher
    /// Token text by id (added tokens override the model vocabulary).
    private let tokensById: [Int: String]
    private let specialIds: Set<Int>

    /// Number of ids: one more than the largest id of the vocabulary and the added tokens.
    public let vocabSize: Int
    /// Ids that end generation.
    public let eosTokenIds: [Int]
    /// Text of the BOS token (for chat templates).
    public let bosToken: String?
    /// Text of the EOS token.
    public let eosToken: String?
    /// The chat template from tokenizer_config.json or GGUF.
    public let chatTemplate: String?

    private init(
        normalizer: Normalizer?, preTokenizer: PreTokenizer?, model: any SubwordModel, postProcessor: PostProcessor?,
        decoder: TokenDecoder, addedTokens: [AddedToken], tokensById: [Int: String],
        bosToken: String?, eosToken: String?, chatTemplate: String?
    ) {
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.model = model
        self.postProcessor = postProcessor
        self.decoder = decoder
        var byId = tokensById
        for token in addedTokens { byId[token.id] = token.content }
        self.tokensById = byId
        self.specialIds = Set(addedTokens.filter(\.special).map(\.id))
        rawMatcher = AddedTokenMatcher(addedTokens.filter { !$0.normalized }, normalize: { $0 })
        normalizedMatcher = AddedTokenMatcher(
            addedTokens.filter(\.normalized), normalize: { normalizer?.normalize($0) ?? $0 })
        specialTokenFinder = AddedTokenMatcher(addedTokens.filter(\.special), normalize: { $0 })
        vocabSize = (byId.keys.max() ?? -1) + 1
        self.bosToken = bosToken
        self.eosToken = eosToken
        self.chatTemplate = chatTemplate
        let eosId = eosToken.flatMap { eos in addedTokens.first { $0.content == eos }?.id ?? model.vocab[eos] }
        eosTokenIds = eosId.map { [$0] } ?? []
    }

    // MARK: - Encoding

    /// Token ids for `text`, as transformers' `tokenizer(text, add_special_tokens=…)["input_ids"]`.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        encode(text, literalRanges: [], addSpecialTokens: addSpecialTokens)
    }

    /// Token ids for `text`; with `parseSpecialTokens` false, the texts of special tokens (`<|im_end|>`) are
    /// ordinary text, as transformers' `split_special_tokens=True` (added tokens that are not special still match).
    public func encode(_ text: String, parseSpecialTokens: Bool, addSpecialTokens: Bool = true) -> [Int] {
        let count = parseSpecialTokens ? 0 : text.unicodeScalars.count
        return encode(text, literalRanges: count > 0 ? [0..<count] : [], addSpecialTokens: addSpecialTokens)
    }

    /// Token ids for `text` where special tokens are matched only outside `literalRanges` (offsets in Unicode
    /// scalars). A literal range is tokenized together with the ordinary text around it, so its pieces are what the
    /// text would give if its special-looking strings were not special (how chat prompts keep message text as text).
    public func encode(_ text: String, literalRanges: [Range<Int>], addSpecialTokens: Bool = true) -> [Int] {
        let input = Array(text.unicodeScalars)
        let literal = Self.disjointSorted(literalRanges, within: input.count)
        var ids: [Int] = []
        var nextLiteral = 0  // segments come in order: the first literal range not wholly before the segment
        for segment in rawMatcher.split(input, literal: literal) {
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(let raw, let offset):
                // The literal ranges within this segment, relative to its start.
                var rawLiteral: [Range<Int>] = []
                while nextLiteral < literal.count && literal[nextLiteral].upperBound <= offset { nextLiteral += 1 }
                var k = nextLiteral
                while k < literal.count && literal[k].lowerBound < offset + raw.count {
                    let lower = max(literal[k].lowerBound, offset)
                    let upper = min(literal[k].upperBound, offset + raw.count)
                    rawLiteral.append((lower - offset)..<(upper - offset))
                    k += 1
                }
                let (scalars, normalizedLiteral) = normalized(raw, literal: rawLiteral)
                for inner in normalizedMatcher.split(scalars, literal: normalizedLiteral) {
                    switch inner {
                    case .token(let id): ids.append(id)
                    case .text(let piece, _): encodePlain(piece, into: &ids)
                    }
                }
            }
        }
        if addSpecialTokens, let postProcessor { ids = postProcessor.process(ids) }
        return ids
    }

    /// Tokens the post-processor adds around one sequence (BERT's `[CLS]` … `[SEP]`: 2).
    public var addedTokenCount: Int { postProcessor?.process([]).count ?? 0 }

    /// `ids` (encoded without special tokens) with the post-processor's special tokens, as `encode` adds them.
    public func addingSpecialTokens(_ ids: [Int]) -> [Int] { postProcessor?.process(ids) ?? ids }

    /// Where the texts of special tokens occur in `text` (offsets in Unicode scalars), leftmost-longest.
    public func specialTokenRanges(in text: String) -> [Range<Int>] {
        specialTokenFinder.specialTokenRanges(in: Array(text.unicodeScalars))
    }

    /// Ranges clamped to `0..<count`, sorted, overlapping and touching ones merged.
    private static func disjointSorted(_ ranges: [Range<Int>], within count: Int) -> [Range<Int>] {
        var merged: [Range<Int>] = []
        for range in ranges.map({ max(0, $0.lowerBound)..<min(count, max(0, $0.upperBound)) }).filter({ !$0.isEmpty })
            .sorted(by: { $0.lowerBound < $1.lowerBound })
        {
            if let last = merged.last, range.lowerBound <= last.upperBound {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
            } else {
                merged.append(range)
            }
        }
        return merged
    }

    /// The normalized text of a segment and where its literal ranges lie in it (needed only when special tokens
    /// are matched on normalized text). The whole segment is normalized at once (exact text). The ranges are found
    /// by normalizing piece by piece when the pieces add up to the whole (NFC, Replace), else by normalizing each
    /// prefix (Prepend), within a budget; past it the whole segment counts as literal, so nothing is forged.
    private func normalized(_ raw: [Unicode.Scalar], literal: [Range<Int>]) -> ([Unicode.Scalar], [Range<Int>]) {
        guard let normalizer else { return (raw, literal) }
        func normalize(_ piece: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
            Array(normalizer.normalize(String(String.UnicodeScalarView(piece))).unicodeScalars)
        }
        let whole = normalize(raw[...])
        guard !literal.isEmpty, normalizedMatcher.hasSpecialTokens else { return (whole, []) }
        var pieces: [Unicode.Scalar] = []
        var mapped: [Range<Int>] = []
        var position = 0
        for range in literal {
            pieces += normalize(raw[position..<range.lowerBound])
            let start = pieces.count
            pieces += normalize(raw[range])
            mapped.append(start..<pieces.count)
            position = range.upperBound
        }
        pieces += normalize(raw[position...])
        if pieces == whole { return (whole, mapped) }

        let prefixBudget = 1 << 22  // scalars normalized in all, about a second at worst
        guard literal.count * 2 * raw.count <= prefixBudget else { return (whole, [0..<whole.count]) }
        func normalizedLength(before end: Int) -> Int? {
            let prefix = normalize(raw[..<end])
            return whole.starts(with: prefix) ? prefix.count : nil
        }
        mapped = []
        for range in literal {
            guard let start = normalizedLength(before: range.lowerBound), let end = normalizedLength(before: range.upperBound)
            else { return (whole, [0..<whole.count]) }
            mapped.append(start..<end)
        }
        return (whole, mapped)
    }

    private func encodePlain(_ text: [Unicode.Scalar], into ids: inout [Int]) {
        guard let preTokenizer else {
            model.tokenize(text, into: &ids)
            return
        }
        var words: [[Unicode.Scalar]] = []
        preTokenizer.split(text, into: &words)
        for word in words { model.tokenize(word, into: &ids) }
    }

    // MARK: - Decoding

    /// Text for `ids`, as transformers' `decode`; unknown ids are skipped.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        String(decoding: bytes(of: ids, skipSpecialTokens: skipSpecialTokens, isFirst: true), as: UTF8.self)
    }

    /// The vocabulary entry for `id` as stored, or nil for an unknown id.
    public func tokenString(_ id: Int) -> String? { tokensById[id] }

    /// Whether `id` is a special (control) token.
    public func isSpecialToken(_ id: Int) -> Bool { specialIds.contains(id) }

    /// Whether `<0xHH>` tokens decode to raw bytes (SentencePiece byte fallback).
    var hasByteFallback: Bool { decoder.hasByteFallback }

    /// Whether `id` is a `<0xHH>` byte token of a byte-fallback tokenizer.
    func isByteFallbackToken(_ id: Int) -> Bool {
        guard decoder.hasByteFallback, let token = tokensById[id] else { return false }
        return BPEModel.byteOfToken(token) != nil
    }

    /// The id of a token given by its exact vocabulary text.
    public func tokenId(_ token: String) -> Int? {
        model.vocab[token] ?? tokensById.first { $0.value == token }?.key
    }

    /// Raw decoded bytes, so streaming can cut at character boundaries.
    ///
    /// With `exactByteRuns`, a run of `<0xHH>` tokens that is not valid UTF-8 becomes one U+FFFD per byte, as
    /// `tokenizers`' ByteFallback decoder does; streaming passes false and keeps the raw bytes instead.
    func bytes(of ids: [Int], skipSpecialTokens: Bool, isFirst: Bool, exactByteRuns: Bool = true) -> [UInt8] {
        var out: [UInt8] = []
        var first = isFirst
        var run: [UInt8] = []
        func endRun() {
            guard !run.isEmpty else { return }
            if String(validatingUTF8Bytes: run) != nil {
                out.append(contentsOf: run)
            } else {
                for _ in run { out.append(contentsOf: [0xEF, 0xBF, 0xBD]) }
            }
            run.removeAll(keepingCapacity: true)
        }
        for id in ids {
            guard let token = tokensById[id] else { continue }
            if skipSpecialTokens && specialIds.contains(id) { continue }
            if exactByteRuns, let byte = decoder.fallbackByte(of: token) {
                run.append(byte)
                first = false
                continue
            }
            endRun()
            out.append(contentsOf: decoder.bytes(of: token, isFirst: first))
            first = false
        }
        endRun()
        return out
    }

    // MARK: - Loading from tokenizer.json

    /// Builds the tokenizer from tokenizer.json, with tokenizer_config.json's special tokens and chat template when given.
    public convenience init(tokenizerJSON: Data, tokenizerConfig: Data?) throws {
        let root = try JSONNode.parseObject(tokenizerJSON, source: "tokenizer.json")
        let config = try tokenizerConfig.map { try JSONNode.parseObject($0, source: "tokenizer_config.json") }

        let modelJSON = try root.object("model")
        let modelType = try modelJSON.optionalString("type") ?? "BPE"
        guard modelType == "BPE" || modelType == "WordPiece" else {
            throw ANELMError("unsupported tokenizer model type '\(modelType)' (supported: BPE, WordPiece)")
        }
        if modelType == "BPE" {
            for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
                if let affix = try modelJSON.optionalString(key), !affix.isEmpty {
                    throw ANELMError("unsupported BPE \(key) '\(affix)'")
                }
            }
        }
        let vocabJSON = try modelJSON.object("vocab")
        let vocabObject = try vocabJSON.objectValue()
        var vocab: Vocabulary = [:]
        vocab.reserveCapacity(vocabObject.count)
        var tokensById: [Int: String] = [:]
        for (token, value) in vocabObject {
            guard let id = value.integerValue, id >= 0 else {
                throw JSONNode(value, path: vocabJSON.path.appending(token)).error("expected a non-negative integer id")
            }
            vocab[token] = id
            tokensById[id] = token
        }
        let model: any SubwordModel = modelType == "WordPiece" ? try WordPieceModel(modelJSON, vocab: vocab) : try Self.bpeModel(modelJSON, vocab: vocab)

        var addedTokens = root.isNull("added_tokens") ? [] : try root.objects("added_tokens").map(AddedToken.init)
        let normalizer = try root.optionalObject("normalizer").map(Normalizer.init)
        let preTokenizer = try root.optionalObject("pre_tokenizer").map(PreTokenizer.init)
        var postProcessor = try root.optionalObject("post_processor").map(PostProcessor.init)
        let decoder = try TokenDecoder(root.optionalObject("decoder"))

        let bosToken = try config.flatMap { try Self.tokenText($0, "bos_token") }
        let eosToken = try config.flatMap { try Self.tokenText($0, "eos_token") }
        // transformers adds the named special tokens it finds in the vocabulary as special added tokens.
        for name in [bosToken, eosToken]
            + (try ["unk_token", "pad_token"].map { key in
                try config.flatMap { try Self.tokenText($0, key) }
            })
        {
            guard let name, !addedTokens.contains(where: { $0.content == name }), let id = vocab[name] else { continue }
            addedTokens.append(AddedToken(id: id, content: name, special: true, normalized: false))
        }
        // As transformers: an explicit add_bos_token/add_eos_token, or no post-processor, means a BOS/EOS template.
        let addBos = try config?.optionalBool("add_bos_token")
        let addEos = try config?.optionalBool("add_eos_token")
        if addBos != nil || addEos != nil || postProcessor == nil {
            func id(of token: String?) -> Int? {
                token.flatMap { t in addedTokens.first { $0.content == t }?.id ?? vocab[t] }
            }
            postProcessor = Self.bosEosTemplate(
                bos: addBos == true ? id(of: bosToken) : nil, eos: addEos == true ? id(of: eosToken) : nil)
        }
        self.init(
            normalizer: normalizer, preTokenizer: preTokenizer, model: model, postProcessor: postProcessor,
            decoder: decoder, addedTokens: addedTokens, tokensById: tokensById, bosToken: bosToken,
            eosToken: eosToken, chatTemplate: try config.flatMap(Self.chatTemplate))
    }

    /// tokenizer.json's BPE model section over its parsed vocabulary.
    private static func bpeModel(_ modelJSON: JSONNode, vocab: Vocabulary) throws -> BPEModel {
        // Paths are built only for an error: a vocabulary has ~10^5 merges.
        let mergesJSON = modelJSON.member("merges")
        let merges = try mergesJSON.arrayValue().enumerated().map { i, value in
            guard let merge = try Self.parseMerge(value) else {
                throw JSONNode(value, path: mergesJSON.path.appending(i)).error("expected \"a b\" or [a, b]")
            }
            return merge
        }
        return try BPEModel(
            vocab: vocab, merges: merges, unknownToken: try modelJSON.optionalString("unk_token"),
            fuseUnknown: try modelJSON.bool("fuse_unk", default: false),
            ignoreMerges: try modelJSON.bool("ignore_merges", default: false),
            byteFallback: try modelJSON.bool("byte_fallback", default: false))
    }

    /// A merge written "a b" or ["a", "b"]; nil for anything else.
    private static func parseMerge(_ value: JSONValue) throws -> (String, String)? {
        switch value {
        case .string(let text):
            let parts = text.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw ANELMError("tokenizer.json merge \(quoted(text)) is not two tokens") }
            return (String(parts[0]), String(parts[1]))
        case .array(let pair) where pair.count == 2:
            guard let a = pair[0].stringValue, let b = pair[1].stringValue else { return nil }
            return (a, b)
        default:
            return nil
        }
    }

    /// A special token in tokenizer_config.json: a string, or an AddedToken object with "content".
    private static func tokenText(_ config: JSONNode, _ key: String) throws -> String? {
        if config.isNull(key) { return nil }
        if let text = config.member(key).value.stringValue { return text }
        return try config.object(key).string("content")
    }

    /// `chat_template`: a string, or a list of {name, template} of which we take "default".
    private static func chatTemplate(_ config: JSONNode) throws -> String? {
        if config.isNull("chat_template") { return nil }
        if let text = config.member("chat_template").value.stringValue { return text }
        let templates = try config.objects("chat_template")
        for entry in templates where try entry.string("name") == "default" { return try entry.string("template") }
        return nil
    }

    private static func bosEosTemplate(bos: Int?, eos: Int?) -> PostProcessor {
        var items: [PostProcessor.TemplateItem] = []
        if let bos { items.append(.special([bos])) }
        items.append(.sequence)
        if let eos { items.append(.special([eos])) }
        return .template(items)
    }

    // MARK: - Loading from GGUF

    /// GGUF `tokenizer.ggml.pre` values whose split transformers knows, mapped to our scanners.
    private static func ggufSplit(_ pre: String?) throws -> PreTokenizer {
        let gpt2 = PreTokenizer.byteLevel(addPrefixSpace: false, useRegex: true)
        func regex(_ pattern: SplitPattern) -> PreTokenizer {
            .sequence([.split(pattern, removeMatches: false), .byteLevel(addPrefixSpace: false, useRegex: false)])
        }
        switch pre ?? "default" {
        // transformers' GGUF loader keeps GPT-2's ByteLevel regex for these (SmolLM2's "smollm" included).
        case "default", "gpt2", "gpt-2", "smollm", "starcoder", "refact", "codeshell":
            return gpt2
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
            "jina-v5-nano", "dbrx", "smaug-bpe":
            return regex(.llama3(maxDigits: 3))
        case "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez":
            return regex(.llama3(maxDigits: 1))
        case let other:
            throw ANELMError("unsupported GGUF pre-tokenizer '\(other)' (supported: smollm, gpt2, default, llama-bpe, qwen2 and aliases)")
        }
    }

    /// Builds the tokenizer from GGUF metadata, as transformers' GGUF loader does.
    public convenience init(gguf: GGUFTokenizerData) throws {
        switch gguf.model {
        case "gpt2":
            try self.init(byteLevelGGUF: gguf)
        case "llama":
            let architecture = gguf.architecture ?? "unknown"
            guard ["gemma", "gemma2", "gemma3"].contains(architecture) else {
                throw ANELMError("unsupported GGUF SentencePiece tokenizer for architecture '\(architecture)' (supported: gemma, gemma2, gemma3)")
            }
            try self.init(gemmaGGUF: gguf)
        default:
            throw ANELMError("unsupported GGUF tokenizer model '\(gguf.model)' (supported: gpt2 byte-level BPE, llama SentencePiece for Gemma)")
        }
    }

    private convenience init(byteLevelGGUF gguf: GGUFTokenizerData) throws {
        let preTokenizer = try Self.ggufSplit(gguf.preTokenizer)
        // Tokens spelled outside the byte alphabet are respelled byte by byte, as transformers does.
        var vocab: Vocabulary = [:]
        vocab.reserveCapacity(gguf.tokens.count)
        var tokensById: [Int: String] = [:]
        tokensById.reserveCapacity(gguf.tokens.count)
        for (id, token) in gguf.tokens.enumerated() {
            let spelled =
                ByteLevelAlphabet.isSpelledInAlphabet(token)
                ? token : String(String.UnicodeScalarView(ByteLevelAlphabet.encode(Array(token.unicodeScalars)[...])))
            vocab[spelled] = id
            tokensById[id] = spelled
        }
        var merges: [(String, String)] = []
        merges.reserveCapacity(gguf.merges.count)
        for merge in gguf.merges {
            let parts = merge.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw ANELMError("GGUF merge '\(merge)' is not two tokens") }
            merges.append((String(parts[0]), String(parts[1])))
        }
        let model = try BPEModel(vocab: vocab, merges: merges, unknownToken: nil, fuseUnknown: false, ignoreMerges: false)

        func token(_ id: Int?) -> String? { id.flatMap { gguf.tokens.indices.contains($0) ? gguf.tokens[$0] : nil } }
        var added: [AddedToken] = []
        var seen = Set<Int>()
        for (id, type) in gguf.tokenTypes.enumerated() where id < gguf.tokens.count {
            let text = gguf.tokens[id]
            if type == 3, ByteLevelAlphabet.isSpelledInAlphabet(text) {
                added.append(AddedToken(id: id, content: text, special: true, normalized: false))
                seen.insert(id)
            } else if type == 4, vocab[text] != nil {
                added.append(AddedToken(id: vocab[text] ?? id, content: text, special: false, normalized: false))
                seen.insert(id)
            }
        }
        for id in [gguf.bosTokenId, gguf.eosTokenId, gguf.unknownTokenId, gguf.padTokenId].compactMap({ $0 })
        where !seen.contains(id) {
            guard let text = token(id), let vocabId = vocab[text] else { continue }
            added.append(AddedToken(id: vocabId, content: text, special: true, normalized: false))
            seen.insert(id)
        }
        let bos = gguf.addBosToken == true ? gguf.bosTokenId.flatMap { token($0) != nil ? $0 : nil } : nil
        let eos = gguf.addEosToken == true ? gguf.eosTokenId.flatMap { token($0) != nil ? $0 : nil } : nil
        self.init(
            normalizer: nil, preTokenizer: preTokenizer, model: model, postProcessor: Self.bosEosTemplate(bos: bos, eos: eos),
            decoder: .byteLevel, addedTokens: added, tokensById: tokensById, bosToken: token(gguf.bosTokenId),
            eosToken: token(gguf.eosTokenId), chatTemplate: gguf.chatTemplate)
    }

    /// Gemma's SentencePiece vocabulary as transformers' GGUF loader builds it: `GemmaTokenizer` (BPE with byte
    /// fallback, " " → "▁"), merges rebuilt from the vocabulary order, control tokens special, user-defined added.
    private convenience init(gemmaGGUF gguf: GGUFTokenizerData) throws {
        guard gguf.tokenTypes.isEmpty || gguf.tokenTypes.count == gguf.tokens.count else {
            throw ANELMError("tokenizer.ggml.token_type has \(gguf.tokenTypes.count) entries for \(gguf.tokens.count) tokens")
        }
        guard gguf.merges.isEmpty else {
            throw ANELMError("unsupported Gemma GGUF tokenizer with tokenizer.ggml.merges (expected merges implied by the vocabulary)")
        }
        let spelled = gguf.tokens.map(SentencePieceMerges.gemmaSpelling)
        var vocab: Vocabulary = [:]
        vocab.reserveCapacity(spelled.count)
        for (id, token) in spelled.enumerated() { vocab[token] = id }
        var tokensById: [Int: String] = [:]
        tokensById.reserveCapacity(spelled.count)
        for (token, id) in vocab { tokensById[id] = token }

        let merges = SentencePieceMerges.fromVocabularyOrder(spelled, vocab: vocab)
        let unknown = vocab["<unk>"] != nil ? "<unk>" : nil
        let model = try BPEModel(
            vocab: vocab, idMerges: merges, unknownToken: unknown, fuseUnknown: true, ignoreMerges: false,
            byteFallback: true)

        func token(_ id: Int?) -> String? { id.flatMap { gguf.tokens.indices.contains($0) ? gguf.tokens[$0] : nil } }
        var added: [AddedToken] = []
        var seen = Set<Int>()
        for (id, type) in gguf.tokenTypes.enumerated() {
            let text = gguf.tokens[id]
            guard type == 3 || type == 4, let vocabId = vocab[text], !seen.contains(vocabId) else { continue }
            added.append(AddedToken(id: vocabId, content: text, special: type == 3, normalized: false))
            seen.insert(vocabId)
        }
        // transformers makes the named special tokens (and GemmaTokenizer's "<mask>") special too.
        for text in [token(gguf.bosTokenId), token(gguf.eosTokenId), token(gguf.unknownTokenId), token(gguf.padTokenId), "<mask>"] {
            guard let text, let vocabId = vocab[text], !seen.contains(vocabId) else { continue }
            added.append(AddedToken(id: vocabId, content: text, special: true, normalized: false))
            seen.insert(vocabId)
        }
        // transformers adds BOS to a SentencePiece vocabulary unless the file says otherwise.
        let bos = gguf.addBosToken ?? true ? gguf.bosTokenId.flatMap { token($0) != nil ? $0 : nil } : nil
        let eos = gguf.addEosToken == true ? gguf.eosTokenId.flatMap { token($0) != nil ? $0 : nil } : nil
        self.init(
            normalizer: .replace(pattern: " ", content: "\u{2581}"),
            preTokenizer: .splitLiteral([" "], .mergedWithPrevious), model: model,
            postProcessor: Self.bosEosTemplate(bos: bos, eos: eos),
            decoder: .pieces(
                replacements: [TokenDecoder.Replacement(pattern: "\u{2581}", content: " ")], byteFallback: true,
                stripLeading: 0),
            addedTokens: added, tokensById: tokensById, bosToken: token(gguf.bosTokenId),
            eosToken: token(gguf.eosTokenId), chatTemplate: gguf.chatTemplate)
    }
}
