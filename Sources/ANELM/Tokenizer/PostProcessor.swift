/// The `post_processor` section of tokenizer.json: adds special tokens around an encoded sequence.
indirect enum PostProcessor: Sendable {
    /// `TemplateProcessing` for a single sequence: each item is either the sequence or fixed ids.
    case template([TemplateItem])
    /// `RobertaProcessing` / `BertProcessing`: `cls` + sequence + `sep`.
    case wrap(prefix: [Int], suffix: [Int])
    /// `ByteLevel` only fixes offsets, so it leaves ids alone.
    case identity
    case sequence([PostProcessor])

    enum TemplateItem: Sendable {
        case sequence
        case special([Int])
    }

    init(_ json: JSONObject) throws {
        let type = try json.string("type")
        switch type {
        case "TemplateProcessing":
            let specials = try json.object("special_tokens")
            var items: [TemplateItem] = []
            for item in try json.objects("single") {
                if let special = try item.optionalObject("SpecialToken") {
                    let name = try special.string("id")
                    let entry = try specials.object(name)
                    let ids = try entry.array("ids").map { value -> Int in
                        guard let id = JSONObject.asInt(value) else { throw ANELMError("\(entry.path).ids: expected integers") }
                        return id
                    }
                    items.append(.special(ids))
                } else if try item.optionalObject("Sequence") != nil {
                    items.append(.sequence)
                } else {
                    throw ANELMError("\(item.path): expected SpecialToken or Sequence")
                }
            }
            self = .template(items)
        case "RobertaProcessing", "BertProcessing":
            func id(_ key: String) throws -> Int {
                let pair = try json.array(key)
                guard pair.count == 2, let id = JSONObject.asInt(pair[1]) else {
                    throw ANELMError("\(json.path).\(key): expected [token, id]")
                }
                return id
            }
            self = .wrap(prefix: [try id("cls")], suffix: [try id("sep")])
        case "ByteLevel":
            self = .identity
        case "Sequence":
            self = .sequence(try json.objects("processors").map(PostProcessor.init))
        default:
            throw ANELMError("unsupported tokenizer post-processor '\(type)' (supported: TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence)")
        }
    }

    func process(_ ids: [Int]) -> [Int] {
        switch self {
        case .identity:
            return ids
        case .wrap(let prefix, let suffix):
            return prefix + ids + suffix
        case .template(let items):
            var out: [Int] = []
            out.reserveCapacity(ids.count + 4)
            for item in items {
                switch item {
                case .sequence: out.append(contentsOf: ids)
                case .special(let special): out.append(contentsOf: special)
                }
            }
            return out
        case .sequence(let steps):
            return steps.reduce(ids) { $1.process($0) }
        }
    }
}

/// The `decoder` section of tokenizer.json: turns tokens back into bytes of text.
enum TokenDecoder: Sendable {
    /// Byte-level: each token maps back through the GPT-2 alphabet.
    case byteLevel
    /// No decoder: tokens joined with spaces, as `tokenizers` does.
    case joinWithSpaces

    init(_ json: JSONObject?) throws {
        guard let json else { self = .joinWithSpaces; return }
        let type = try json.string("type")
        switch type {
        case "ByteLevel":
            self = .byteLevel
        case "Sequence":
            let steps = try json.objects("decoders")
            guard steps.count == 1, try steps[0].string("type") == "ByteLevel" else {
                throw ANELMError("unsupported tokenizer decoder Sequence (only a single ByteLevel is supported)")
            }
            self = .byteLevel
        default:
            throw ANELMError("unsupported tokenizer decoder '\(type)' (supported: ByteLevel)")
        }
    }

    /// Bytes for one token; `isFirst` matters only when joining with spaces.
    func bytes(of token: String, isFirst: Bool) -> [UInt8] {
        switch self {
        case .byteLevel: return ByteLevelAlphabet.decode(token)
        case .joinWithSpaces: return isFirst ? Array(token.utf8) : [0x20] + Array(token.utf8)
        }
    }
}
