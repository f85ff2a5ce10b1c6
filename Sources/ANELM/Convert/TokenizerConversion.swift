import Foundation

/// The tokenizer moved between formats: tokenizer.json (+ tokenizer_config.json) to GGUF's `tokenizer.*` keys the
/// way llama.cpp's converter writes them for a byte-level BPE vocabulary, and back. (`GGUFTokenizerData` reads
/// those keys; this writes them.)
enum TokenizerConversion {
    // llama.cpp's token types (gguf-py `TokenType`).
    static let normal: Int32 = 1, control: Int32 = 3, userDefined: Int32 = 4, unused: Int32 = 5

    /// `tokenizer.ggml.*` and `tokenizer.chat_template` from a Hugging Face folder with a byte-level BPE tokenizer.
    static func ggufMetadata(_ folder: HFModelFolder, vocabularySize: Int) throws -> [(key: String, value: GGUFEncodedValue)] {
        guard let data = folder.tokenizerJSONData else { throw ANELMError("no tokenizer.json in \(folder.path); the GGUF file needs the tokenizer") }
        guard let root = try JSONValue.parse(data, source: "tokenizer.json").objectValue, let model = root["model"]?.objectValue else {
            throw ANELMError("tokenizer.json has no model section")
        }
        guard model["byte_fallback"]?.boolValue != true else {
            throw ANELMError("converting a SentencePiece-style tokenizer.json (BPE with byte fallback, as Gemma's) to GGUF is not supported yet")
        }
        guard model["type"]?.stringValue == "BPE", let vocab = model["vocab"]?.objectValue else {
            throw ANELMError("converting a \(model["type"]?.stringValue ?? "?") tokenizer to GGUF is not supported yet (byte-level BPE is)")
        }
        var tokenById: [Int: String] = [:]
        for (token, id) in vocab {
            guard let id = id.integerValue, id >= 0 else { throw ANELMError("tokenizer.json: token \(quoted(token)) has a bad id") }
            tokenById[id] = token
        }
        var specialIds = Set<Int>()
        var addedIds = Set<Int>()
        for added in root["added_tokens"]?.arrayValue ?? [] {
            guard let id = added["id"]?.integerValue, id >= 0, let content = added["content"]?.stringValue else {
                throw ANELMError("tokenizer.json: an added token lacks its id or content")
            }
            tokenById[id] = content
            addedIds.insert(id)
            if added["special"]?.boolValue == true { specialIds.insert(id) }
        }
        let count = max(vocabularySize, (tokenById.keys.max() ?? -1) + 1)
        var tokens: [String] = []
        var types: [Int32] = []
        for id in 0..<count {
            guard let token = tokenById[id] else {
                tokens.append("[PAD\(id)]")
                types.append(unused)
                continue
            }
            tokens.append(token)
            types.append(specialIds.contains(id) ? control : addedIds.contains(id) ? userDefined : normal)
        }
        let merges: [String] = try (model["merges"]?.arrayValue ?? []).map { merge in
            if let s = merge.stringValue { return s }
            if let pair = merge.arrayValue, pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue { return "\(a) \(b)" }
            throw ANELMError("tokenizer.json: a merge is neither \"a b\" nor [a, b]")
        }

        let config = try folder.tokenizerConfigData.map { try JSONValue.parse($0, source: "tokenizer_config.json") }
        let idOf = Dictionary(tokenById.map { ($1, $0) }, uniquingKeysWith: max)
        func specialId(_ key: String) -> Int? {
            let value = config?[key]
            guard let content = value?.stringValue ?? value?["content"]?.stringValue else { return nil }
            return idOf[content]
        }
        var keys: [(key: String, value: GGUFEncodedValue)] = [
            ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string(try preTokenizerName(root["pre_tokenizer"]))),
            ("tokenizer.ggml.tokens", .strings(tokens)), ("tokenizer.ggml.token_type", .int32s(types)), ("tokenizer.ggml.merges", .strings(merges)),
        ]
        let bos = specialId("bos_token") ?? folder.config["bos_token_id"]?.integerValue
        let eos = specialId("eos_token") ?? folder.config["eos_token_id"]?.integerValue
        for (key, id) in [("bos_token_id", bos), ("eos_token_id", eos), ("unknown_token_id", specialId("unk_token")), ("padding_token_id", specialId("pad_token"))] {
            if let id { keys.append(("tokenizer.ggml.\(key)", try .count(id, key: key))) }
        }
        let addBos = config?["add_bos_token"]?.boolValue ?? postProcessorAddsFirst(root["post_processor"], token: bos.flatMap { tokenById[$0] })
        keys.append(("tokenizer.ggml.add_bos_token", .bool(addBos)))
        if let addEos = config?["add_eos_token"]?.boolValue { keys.append(("tokenizer.ggml.add_eos_token", .bool(addEos))) }
        if let template = config?["chat_template"]?.stringValue ?? folder.chatTemplateFile { keys.append(("tokenizer.chat_template", .string(template))) }
        return keys
    }

    /// Whether a TemplateProcessing post-processor starts a single sequence with `token` (how BOS is added).
    private static func postProcessorAddsFirst(_ processor: JSONValue?, token: String?) -> Bool {
        guard let token, processor?["type"]?.stringValue == "TemplateProcessing", let first = processor?["single"]?.arrayValue?.first else { return false }
        return first["SpecialToken"]?["id"]?.stringValue == token
    }

    /// llama.cpp's name (`tokenizer.ggml.pre`) for the pre-tokenizers anelm reads back the same way.
    static func preTokenizerName(_ pre: JSONValue?) throws -> String {
        func isByteLevel(_ v: JSONValue?) -> Bool { v?["type"]?.stringValue == "ByteLevel" }
        if isByteLevel(pre), pre?["use_regex"]?.boolValue ?? true { return "gpt-2" }
        if pre?["type"]?.stringValue == "Sequence", let steps = pre?["pretokenizers"]?.arrayValue, steps.count == 2, isByteLevel(steps[1]) {
            if steps[0]["type"]?.stringValue == "Digits", steps[0]["individual_digits"]?.boolValue == true { return "smollm" }
            if steps[0]["type"]?.stringValue == "Split", let regex = steps[0]["pattern"]?["Regex"]?.stringValue {
                switch SplitPattern(regex: regex) {
                case .llama3(maxDigits: 3)?: return "llama-bpe"
                case .llama3(maxDigits: 1)?: return "qwen2"
                case .gpt2?: return "gpt-2"
                default: break
                }
            }
        }
        throw ANELMError("this tokenizer.json pre-tokenizer has no llama.cpp name anelm knows (gpt-2, smollm, llama-bpe and qwen2 are supported)")
    }

    /// tokenizer.json, tokenizer_config.json and generation_config.json for a GGUF file's byte-level BPE tokenizer (or
    /// Gemma's SentencePiece one), written so that transformers and anelm split and merge text as anelm does when
    /// reading the GGUF.
    static func huggingFaceFiles(_ file: GGUFFile) throws -> [(name: String, json: JSONValue)] {
        let data = try GGUFTokenizerData(file)
        let tokenizer: JSONValue
        switch data.model {
        case "gpt2": tokenizer = try byteLevelTokenizerJSON(data)
        case "llama" where ["gemma", "gemma2", "gemma3"].contains(data.architecture ?? ""): tokenizer = gemmaTokenizerJSON(data)
        default:
            throw ANELMError(
                "writing a \(data.model) GGUF tokenizer as tokenizer.json is not supported yet (byte-level BPE, gpt2, and Gemma's SentencePiece are)")
        }
        let bosToken = data.bosTokenId.flatMap { data.tokens.indices.contains($0) ? data.tokens[$0] : nil }
        let eosToken = data.eosTokenId.flatMap { data.tokens.indices.contains($0) ? data.tokens[$0] : nil }
        var config: JSONObject = ["tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": false]
        config["add_bos_token"] = .bool(data.addBosToken ?? (data.model == "llama"))
        if let bosToken { config["bos_token"] = .string(bosToken) }
        if let eosToken { config["eos_token"] = .string(eosToken) }
        if let pad = data.padTokenId, data.tokens.indices.contains(pad) { config["pad_token"] = .string(data.tokens[pad]) }
        if let template = data.chatTemplate { config["chat_template"] = .string(template) }
        var generation: JSONObject = [:]
        if let bos = data.bosTokenId { generation["bos_token_id"] = .int(bos) }
        var eosIds = data.eosTokenId.map { [$0] } ?? []
        if let eot = file.int("tokenizer.ggml.eot_token_id"), !eosIds.contains(eot) { eosIds.append(eot) }
        if !eosIds.isEmpty { generation["eos_token_id"] = eosIds.count == 1 ? .int(eosIds[0]) : .array(eosIds.map { .int($0) }) }
        return [("tokenizer.json", tokenizer), ("tokenizer_config.json", .object(config)), ("generation_config.json", .object(generation))]
    }

    /// A template post-processor that starts a single sequence (and each of a pair) with BOS.
    private static func bosTemplate(_ bosToken: String, id: Int) -> JSONValue {
        [
            "type": "TemplateProcessing", "single": [["SpecialToken": ["id": .string(bosToken), "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
            "pair": [
                ["SpecialToken": ["id": .string(bosToken), "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                ["SpecialToken": ["id": .string(bosToken), "type_id": 0]], ["Sequence": ["id": "B", "type_id": 0]],
            ],
            "special_tokens": [bosToken: ["id": .string(bosToken), "ids": [.int(id)], "tokens": [.string(bosToken)]]],
        ]
    }

    private static func addedToken(id: Int, content: String, special: Bool, normalized: Bool) -> JSONValue {
        [
            "id": .int(id), "content": .string(content), "single_word": false, "lstrip": false, "rstrip": false, "normalized": .bool(normalized),
            "special": .bool(special),
        ]
    }

    /// Gemma's SentencePiece vocabulary as `Tokenizer(gemmaGGUF:)` reads it (what transformers' GGUF loader builds):
    /// BPE with byte fallback, " " → "▁", merges implied by the vocabulary order, control tokens special.
    private static func gemmaTokenizerJSON(_ data: GGUFTokenizerData) -> JSONValue {
        // Tokens of only whitespace with a space in them are stored with real spaces; GemmaTokenizer spells them "▁".
        let spelled = data.tokens.map { token -> String in
            let scalars = token.unicodeScalars
            guard scalars.contains(" "), scalars.allSatisfy(SentencePieceMerges.isPythonWhitespace) else { return token }
            return String(repeating: "\u{2581}", count: scalars.count)
        }
        var ids: Vocabulary = [:]
        ids.reserveCapacity(spelled.count)
        for (id, token) in spelled.enumerated() { ids[token] = id }
        // In id order. Of distinct tokens that Swift's String equality merges (canonically equivalent spellings, which
        // a JSON object here cannot hold apart) the first is kept; the others, and merges that use them, are left out.
        var vocab = JSONObject()
        var dropped = Set<Int32>()
        for (id, token) in spelled.enumerated() where ids[token] == id {
            if vocab[token] == nil { vocab[token] = .int(id) } else { dropped.insert(Int32(id)) }
        }
        let merges = SentencePieceMerges.fromVocabularyOrder(spelled, vocab: ids).sorted { $0.rank < $1.rank }
            .filter { !dropped.contains($0.left) && !dropped.contains($0.right) && !dropped.contains($0.merged) }
        var added: [JSONValue] = []
        var seen = Set<Int>()
        for (id, type) in data.tokenTypes.enumerated() where id < data.tokens.count && (Int32(type) == control || Int32(type) == userDefined) {
            guard let vocabId = ids[data.tokens[id]], !dropped.contains(Int32(vocabId)), seen.insert(vocabId).inserted else { continue }
            added.append(addedToken(id: vocabId, content: data.tokens[id], special: Int32(type) == control, normalized: false))
        }
        let named = [data.bosTokenId, data.eosTokenId, data.unknownTokenId, data.padTokenId].map { id in
            id.flatMap { data.tokens.indices.contains($0) ? data.tokens[$0] : nil }
        }
        for text in named + ["<mask>"] {
            guard let text, let vocabId = ids[text], !dropped.contains(Int32(vocabId)), seen.insert(vocabId).inserted else { continue }
            added.append(addedToken(id: vocabId, content: text, special: true, normalized: false))
        }
        var postProcessor: JSONValue = nil
        if data.addBosToken ?? true, let bos = data.bosTokenId, data.tokens.indices.contains(bos) { postProcessor = bosTemplate(data.tokens[bos], id: bos) }
        return [
            "version": "1.0", "truncation": nil, "padding": nil, "added_tokens": .array(added),
            "normalizer": ["type": "Replace", "pattern": ["String": " "], "content": "\u{2581}"],
            "pre_tokenizer": ["type": "Split", "pattern": ["String": " "], "behavior": "MergedWithPrevious", "invert": false],
            "post_processor": postProcessor,
            "decoder": [
                "type": "Sequence",
                "decoders": [["type": "Replace", "pattern": ["String": "\u{2581}"], "content": " "], ["type": "ByteFallback"], ["type": "Fuse"]],
            ],
            "model": [
                "type": "BPE", "dropout": nil, "unk_token": ids["<unk>"] != nil ? "<unk>" : nil, "continuing_subword_prefix": nil,
                "end_of_word_suffix": nil, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                "vocab": .object(vocab),
                "merges": .array(merges.map { [.string(spelled[Int($0.left)]), .string(spelled[Int($0.right)])] }),
            ],
        ]
    }

    /// tokenizer.json for a byte-level BPE GGUF tokenizer.
    private static func byteLevelTokenizerJSON(_ data: GGUFTokenizerData) throws -> JSONValue {
        let regex: String?
        switch data.preTokenizer ?? "default" {
        case "default", "gpt2", "gpt-2", "smollm", "starcoder", "refact", "codeshell": regex = nil
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "dbrx", "smaug-bpe": regex = SplitPattern.llama3Regex
        case "qwen2", "deepseek-r1-qwen": regex = SplitPattern.qwen2Regex
        case let other: throw ANELMError("GGUF pre-tokenizer \(quoted(other)) has no tokenizer.json form anelm knows")
        }
        func byteLevel(useRegex: Bool, prefix: Bool = false, trim: Bool = false) -> JSONValue {
            ["type": "ByteLevel", "add_prefix_space": .bool(prefix), "trim_offsets": .bool(trim), "use_regex": .bool(useRegex)]
        }
        let preTokenizer: JSONValue =
            regex.map {
                ["type": "Sequence", "pretokenizers": [["type": "Split", "pattern": ["Regex": .string($0)], "behavior": "Isolated", "invert": false], byteLevel(useRegex: false)]]
            } ?? byteLevel(useRegex: true)
        var vocab = JSONObject()
        var added: [JSONValue] = []
        for (id, token) in data.tokens.enumerated() {
            vocab[token] = .int(id)
            let type = data.tokenTypes.indices.contains(id) ? Int32(data.tokenTypes[id]) : normal
            if type == control || type == userDefined {
                added.append(addedToken(id: id, content: token, special: type == control, normalized: type == userDefined))
            }
        }
        var postProcessor = byteLevel(useRegex: true, trim: false)
        if data.addBosToken == true, let bos = data.bosTokenId, data.tokens.indices.contains(bos) { postProcessor = bosTemplate(data.tokens[bos], id: bos) }
        return [
            "version": "1.0", "truncation": nil, "padding": nil, "added_tokens": .array(added), "normalizer": nil, "pre_tokenizer": preTokenizer,
            "post_processor": postProcessor, "decoder": byteLevel(useRegex: true, prefix: true, trim: true),
            "model": [
                "type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil, "end_of_word_suffix": nil, "fuse_unk": false,
                "byte_fallback": false, "ignore_merges": false, "vocab": .object(vocab), "merges": .array(data.merges.map { .string($0) }),
            ],
        ]
    }
}
