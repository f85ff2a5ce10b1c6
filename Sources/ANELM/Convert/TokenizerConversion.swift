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

    /// tokenizer.json, tokenizer_config.json and generation_config.json for a GGUF file's byte-level BPE tokenizer,
    /// written so that transformers and anelm split and merge text as anelm does when reading the GGUF.
    static func huggingFaceFiles(_ file: GGUFFile) throws -> [(name: String, json: JSONValue)] {
        let data = try GGUFTokenizerData(file)
        guard data.model == "gpt2" else {
            throw ANELMError("writing a \(data.model) GGUF tokenizer as tokenizer.json is not supported yet (byte-level BPE, gpt2, is)")
        }
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
                added.append([
                    "id": .int(id), "content": .string(token), "single_word": false, "lstrip": false, "rstrip": false, "normalized": .bool(type == userDefined),
                    "special": .bool(type == control),
                ])
            }
        }
        let bosToken = data.bosTokenId.flatMap { data.tokens.indices.contains($0) ? data.tokens[$0] : nil }
        let eosToken = data.eosTokenId.flatMap { data.tokens.indices.contains($0) ? data.tokens[$0] : nil }
        var postProcessor = byteLevel(useRegex: true, trim: false)
        if data.addBosToken == true, let bosToken, let bos = data.bosTokenId {
            postProcessor = [
                "type": "TemplateProcessing", "single": [["SpecialToken": ["id": .string(bosToken), "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                "pair": [
                    ["SpecialToken": ["id": .string(bosToken), "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                    ["SpecialToken": ["id": .string(bosToken), "type_id": 0]], ["Sequence": ["id": "B", "type_id": 0]],
                ],
                "special_tokens": [bosToken: ["id": .string(bosToken), "ids": [.int(bos)], "tokens": [.string(bosToken)]]],
            ]
        }
        let tokenizer: JSONValue = [
            "version": "1.0", "truncation": nil, "padding": nil, "added_tokens": .array(added), "normalizer": nil, "pre_tokenizer": preTokenizer,
            "post_processor": postProcessor, "decoder": byteLevel(useRegex: true, prefix: true, trim: true),
            "model": [
                "type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil, "end_of_word_suffix": nil, "fuse_unk": false,
                "byte_fallback": false, "ignore_merges": false, "vocab": .object(vocab), "merges": .array(data.merges.map { .string($0) }),
            ],
        ]
        var config: JSONObject = ["tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": false]
        config["add_bos_token"] = .bool(data.addBosToken ?? false)
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
}
