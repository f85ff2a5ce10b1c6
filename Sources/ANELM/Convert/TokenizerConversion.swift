import Foundation

/// The tokenizer moved between formats: tokenizer.json (+ tokenizer_config.json) to GGUF's `tokenizer.*` keys the
/// way llama.cpp's converter writes them for a byte-level BPE vocabulary or Gemma's SentencePiece one, and back.
/// (`GGUFTokenizerData` reads those keys; this writes them.)
enum TokenizerConversion {
    // llama.cpp's token types (gguf-py `TokenType`).
    static let normal: Int32 = 1, unknown: Int32 = 2, control: Int32 = 3, userDefined: Int32 = 4, unused: Int32 = 5, byte: Int32 = 6

    /// `tokenizer.ggml.*` and `tokenizer.chat_template` from a Hugging Face folder with a byte-level BPE tokenizer.
    static func ggufMetadata(_ folder: HFModelFolder, vocabularySize: Int) throws -> [(key: String, value: GGUFEncodedValue)] {
        guard let data = folder.tokenizerJSONData else { throw ANELMError("no tokenizer.json in \(folder.path); the GGUF file needs the tokenizer") }
        guard let root = try JSONValue.parse(data, source: "tokenizer.json").objectValue, let model = root["model"]?.objectValue else {
            throw ANELMError("tokenizer.json has no model section")
        }
        if model["byte_fallback"]?.boolValue == true {
            return try sentencePieceMetadata(folder, root: root, model: model, vocabularySize: vocabularySize)
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

    /// `tokenizer.*` keys for Gemma's tokenizer.json (BPE with byte fallback over a SentencePiece vocabulary) as
    /// llama.cpp's `_set_vocab_sentencepiece` writes them from the tokenizer.model beside it: model "llama", pre
    /// "default", every id below config.json's `vocab_size` (ids past it dropped, missing ones `[PADn]`, unused,
    /// -10000), added tokens control (special, or looking special) or user-defined ("▁" back to " "), score -1000,
    /// `<0xXX>` byte tokens score 0. SentencePiece scores its learned pieces -(rank) in training order; tokenizer.json
    /// keeps only that order, so a normal piece scores minus the number of normal pieces before it. Gemma 3's own
    /// model numbers its single characters 31 further down (a gap tokenizer.json does not record); a single character
    /// is never the result of a merge, so its score decides no tokenization.
    private static func sentencePieceMetadata(_ folder: HFModelFolder, root: JSONObject, model: JSONObject, vocabularySize: Int) throws
        -> [(key: String, value: GGUFEncodedValue)]
    {
        let modelType = folder.config["model_type"]?.stringValue ?? "?"
        guard modelType.hasPrefix("gemma") else {
            throw ANELMError("converting a SentencePiece-style tokenizer.json (BPE with byte fallback) to GGUF is supported for Gemma only, not \(quoted(modelType))")
        }
        guard model["type"]?.stringValue == "BPE" else { throw ANELMError("tokenizer.json: a byte-fallback tokenizer must be BPE, not \(model["type"]?.stringValue ?? "?")") }
        guard let vocab = model["vocab"]?.objectValue else { throw ANELMError("tokenizer.json: the byte-fallback BPE model has no vocab") }
        guard !prefixesSpace(root) else {
            throw ANELMError("tokenizer.json puts \"▁\" before the text (a Llama-style SentencePiece tokenizer); only Gemma's, which does not, converts to GGUF")
        }
        var tokenById: [Int: String] = [:]
        for (token, id) in vocab {
            guard let id = id.integerValue, id >= 0 else { throw ANELMError("tokenizer.json: token \(quoted(token)) has a bad id") }
            guard tokenById.updateValue(token, forKey: id) == nil else { throw ANELMError("tokenizer.json: two tokens have the id \(id)") }
        }
        // tokenizer.json's added tokens, then tokenizer_config.json's added_tokens_decoder (the one llama.cpp reads).
        var added: [Int: (content: String, special: Bool)] = [:]
        var addedIdByContent: Vocabulary = [:]
        for entry in root["added_tokens"]?.arrayValue ?? [] {
            guard let id = entry["id"]?.integerValue, id >= 0, let content = entry["content"]?.stringValue else {
                throw ANELMError("tokenizer.json: an added token lacks its id or content")
            }
            added[id] = (content, entry["special"]?.boolValue ?? false)
            if addedIdByContent[content] == nil { addedIdByContent[content] = id }
        }
        let config = try folder.tokenizerConfigData.map { try JSONValue.parse($0, source: "tokenizer_config.json") }
        for (key, entry) in config?["added_tokens_decoder"]?.objectValue ?? JSONObject() {
            guard let id = Int(key), id >= 0, let content = entry["content"]?.stringValue else {
                throw ANELMError("tokenizer_config.json: added_tokens_decoder entry \(quoted(key)) lacks a numeric id or its content")
            }
            added[id] = (content, entry["special"]?.boolValue ?? false)
        }
        let count = vocabularySize > 0 ? vocabularySize : max(tokenById.keys.max() ?? -1, added.keys.max() ?? -1) + 1
        guard count > 0 else { throw ANELMError("tokenizer.json: the vocabulary is empty") }
        // Byte fallback spells an unknown character as its UTF-8 bytes; llama.cpp looks each one up.
        let byteTokens = (0..<256).map { "<0x" + String(format: "%02X", $0) + ">" }
        var vocabIds: Vocabulary = [:]
        for (id, token) in tokenById { vocabIds[token] = id }
        if let missing = byteTokens.first(where: { vocabIds[$0].map { $0 >= count } ?? true }) {
            throw ANELMError("tokenizer.json: byte fallback needs the 256 byte tokens <0x00>…<0xFF> in the vocabulary; \(missing) is missing")
        }
        let isByte = Set(byteTokens.compactMap { vocabIds[$0] })
        let unknownToken = model["unk_token"]?.stringValue
        var tokens = (0..<count).map { "[PAD\($0)]" }
        var scores = [Float](repeating: -10000, count: count)
        var types = [Int32](repeating: unused, count: count)
        var normalRank = 0
        for id in 0..<count {
            if case let (content, special)? = added[id] {
                let control = special || looksSpecial(content)
                tokens[id] = control ? content : content.replacingOccurrences(of: "\u{2581}", with: " ")
                types[id] = control ? Self.control : userDefined
                scores[id] = -1000
            } else if let token = tokenById[id] {
                tokens[id] = token
                if isByte.contains(id) {
                    (types[id], scores[id]) = (byte, 0)
                } else if token == unknownToken {
                    (types[id], scores[id]) = (unknown, 0)
                } else {
                    (types[id], scores[id]) = (normal, -Float(normalRank))
                    normalRank += 1
                }
            }
        }
        var keys: [(key: String, value: GGUFEncodedValue)] = [
            ("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.pre", .string("default")), ("tokenizer.ggml.tokens", .strings(tokens)),
            ("tokenizer.ggml.scores", .float32s(scores)), ("tokenizer.ggml.token_type", .int32s(types)),
        ]
        // gguf-py's SpecialVocab: tokenizer_config.json's `<name>_token` found among the added tokens, else config.json's `<name>_token_id`.
        func content(_ name: String) -> String? { config?["\(name)_token"]?.stringValue ?? config?["\(name)_token"]?["content"]?.stringValue }
        func specialId(_ name: String) -> Int? {
            let id = content(name).flatMap { addedIdByContent[$0] } ?? folder.config["\(name)_token_id"]?.integerValue
            return id.flatMap { (0..<count).contains($0) ? $0 : nil }
        }
        for (name, key) in [("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"), ("pad", "padding_token_id")] {
            if let id = specialId(name) { keys.append(("tokenizer.ggml.\(key)", try .count(id, key: key))) }
        }
        var flags = templateFlags(root["post_processor"], bos: content("bos"), eos: content("eos"), sep: content("sep"))
        for name in ["bos", "eos", "sep"] {
            guard let value = config?["add_\(name)_token"]?.boolValue else { continue }
            if let i = flags.firstIndex(where: { $0.name == name }) { flags[i].value = value } else { flags.append((name, value)) }
        }
        for (name, value) in flags { keys.append(("tokenizer.ggml.add_\(name)_token", .bool(value))) }
        if let template = config?["chat_template"]?.stringValue ?? folder.chatTemplateFile { keys.append(("tokenizer.chat_template", .string(template))) }
        keys.append(("tokenizer.ggml.add_space_prefix", .bool(false)))
        return keys
    }

    /// Whether the normalizer or pre-tokenizer puts "▁" before the text (Llama's SentencePiece does, Gemma's not).
    private static func prefixesSpace(_ root: JSONObject) -> Bool {
        func steps(_ v: JSONValue?) -> [JSONValue] {
            guard let v, v != .null else { return [] }
            return v["normalizers"]?.arrayValue ?? v["pretokenizers"]?.arrayValue ?? [v]
        }
        return steps(root["normalizer"]).contains { $0["type"]?.stringValue == "Prepend" }
            || steps(root["pre_tokenizer"]).contains {
                $0["type"]?.stringValue == "Metaspace" && ($0["prepend_scheme"]?.stringValue.map { $0 != "never" } ?? ($0["add_prefix_space"]?.boolValue ?? true))
            }
    }

    /// llama.cpp's `does_token_look_special`: added tokens it makes control even when not marked special.
    private static func looksSpecial(_ token: String) -> Bool {
        ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].contains(token) || (token.hasPrefix("<|") && token.hasSuffix("|>"))
            || (token.hasPrefix("<｜") && token.hasSuffix("｜>")) || (token.hasPrefix("<unused") && token.hasSuffix(">"))
    }

    /// add_bos / add_sep / add_eos as gguf-py's SpecialVocab reads them from a TemplateProcessing post-processor
    /// (its crude parse: a leading special token, a trailing one, the separator between A and B of a pair).
    private static func templateFlags(_ processor: JSONValue?, bos: String?, eos: String?, sep: String?) -> [(name: String, value: Bool)] {
        guard processor?["type"]?.stringValue == "TemplateProcessing", let single = processor?["single"]?.arrayValue else { return [] }
        func special(_ item: JSONValue?) -> String? { item?["SpecialToken"]?["id"]?.stringValue }
        var flags: [(name: String, value: Bool)] = []
        var first: String?, last: String?
        if single.count > 1 {
            first = special(single.first)
            if let first { flags.append(("bos", first == bos)) }
            last = special(single.last)
            if let last { flags.append(("eos", last == eos)) }
        }
        guard var pair = processor?["pair"]?.arrayValue, !pair.isEmpty else { return flags }
        if first != nil, special(pair.first) == first { pair.removeFirst() }
        if last != nil, !pair.isEmpty, special(pair.last) == last { pair.removeLast() }
        guard pair.count > 2, pair.first?["Sequence"]?["id"]?.stringValue == "A", pair.last?["Sequence"]?["id"]?.stringValue == "B" else { return flags }
        let middle = Array(pair.dropFirst().dropLast())
        let separators = [sep, eos].compactMap { $0 }
        var addSep = special(middle.first).map { separators.contains($0) && last == nil } ?? false
        if middle.count == 2, let second = special(middle[1]), separators.contains(second) { addSep = true }
        flags.append(("sep", addSep))
        return flags
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
        if let unk = data.unknownTokenId, data.tokens.indices.contains(unk) { config["unk_token"] = .string(data.tokens[unk]) }
        if let addEos = data.addEosToken { config["add_eos_token"] = .bool(addEos) }
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
        let spelled = data.tokens.map(SentencePieceMerges.gemmaSpelling)
        var ids: Vocabulary = [:]
        ids.reserveCapacity(spelled.count)
        for (id, token) in spelled.enumerated() { ids[token] = id }
        // In id order; canonically equivalent spellings stay apart (JSONObject compares keys exactly).
        var vocab = JSONObject()
        for (id, token) in spelled.enumerated() where ids[token] == id { vocab[token] = .int(id) }
        let merges = SentencePieceMerges.fromVocabularyOrder(spelled, vocab: ids).sorted { $0.rank < $1.rank }
        var added: [JSONValue] = []
        var seen = Set<Int>()
        // Control and user-defined tokens are added tokens, under the vocabulary's spelling: Gemma's user-defined runs
        // of spaces ("  "… in the GGUF) as "▁▁"…, as Gemma's own tokenizer.json has them, so that converting back gives
        // llama.cpp's user-defined "  "…. Not normalized, they match only a literal "▁▁" in the text; runs of spaces
        // are left to the merges, as transformers and `Tokenizer(gemmaGGUF:)` leave them for the GGUF.
        for (id, type) in data.tokenTypes.enumerated() where id < spelled.count && (Int32(type) == control || Int32(type) == userDefined) {
            guard let vocabId = ids[spelled[id]], seen.insert(vocabId).inserted else { continue }
            added.append(addedToken(id: vocabId, content: spelled[id], special: Int32(type) == control, normalized: false))
        }
        let named = [data.bosTokenId, data.eosTokenId, data.unknownTokenId, data.padTokenId].map { id in
            id.flatMap { data.tokens.indices.contains($0) ? data.tokens[$0] : nil }
        }
        for text in named + ["<mask>"] {
            guard let text, let vocabId = ids[text], seen.insert(vocabId).inserted else { continue }
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
