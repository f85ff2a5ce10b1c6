import Foundation

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

    init(_ json: JSONNode) throws {
        let type = try json.string("type")
        switch type {
        case "TemplateProcessing":
            let specials = try json.object("special_tokens")
            var items: [TemplateItem] = []
            for item in try json.objects("single") {
                if let special = try item.optionalObject("SpecialToken") {
                    let name = try special.string("id")
                    let entry = try specials.object(name)
                    let ids = try entry.array("ids").map { try $0.intValue() }
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
                guard pair.count == 2 else { throw json.member(key).error("expected [token, id]") }
                return try pair[1].intValue()
            }
            self = .wrap(prefix: [try id("cls")], suffix: [try id("sep")])
        case "ByteLevel":
            self = .identity
        case "Sequence":
            self = .sequence(try json.objects("processors").map(PostProcessor.init))
        default:
            throw ANELMError(
                "unsupported tokenizer post-processor '\(type)' (supported: TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence)")
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
    /// SentencePiece style, `Sequence[Replace, ByteFallback, Fuse, Strip]`: literal replacements ("▁" → " "),
    /// `<0xHH>` tokens as raw bytes, and up to `stripLeading` leading spaces removed from the text.
    case pieces(replacements: [Replacement], byteFallback: Bool, stripLeading: Int)
    /// WordPiece: continuation pieces lose their prefix and join the previous one, other pieces follow a space;
    /// with `cleanup`, the spaces BERT's tokenization put before punctuation and contractions are taken out.
    case wordPiece(prefix: String, cleanup: Bool)

    struct Replacement: Sendable {
        let pattern: String
        let content: String
    }

    init(_ json: JSONNode?) throws {
        guard let json else {
            self = .joinWithSpaces
            return
        }
        let type = try json.string("type")
        switch type {
        case "ByteLevel":
            self = .byteLevel
        case "Sequence":
            let steps = try json.objects("decoders")
            if steps.count == 1, try steps[0].string("type") == "ByteLevel" {
                self = .byteLevel
            } else {
                self = try Self.pieces(steps)
            }
        case "Replace", "ByteFallback", "Fuse", "Strip":
            self = try Self.pieces([json])
        case "WordPiece":
            self = .wordPiece(prefix: try json.optionalString("prefix") ?? "##", cleanup: try json.bool("cleanup", default: true))
        default:
            throw ANELMError("unsupported tokenizer decoder '\(type)' (supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, WordPiece, Sequence)")
        }
    }

    /// A sequence of Replace / ByteFallback / Fuse / Strip steps, in the orders real tokenizers use.
    private static func pieces(_ steps: [JSONNode]) throws -> TokenDecoder {
        var replacements: [Replacement] = []
        var byteFallback = false
        var stripLeading = 0
        var fused = false
        for step in steps {
            let type = try step.string("type")
            switch type {
            case "Replace" where !byteFallback && !fused:
                guard let literal = try step.object("pattern").optionalString("String"), !literal.isEmpty else {
                    throw ANELMError("unsupported Replace decoder pattern (only a non-empty literal String is supported)")
                }
                replacements.append(Replacement(pattern: literal, content: try step.string("content")))
            case "ByteFallback" where !fused:
                byteFallback = true
            case "Fuse":
                fused = true
            case "Strip" where fused:
                // After Fuse there is one string, so Strip only touches the start and end of the whole text.
                guard try step.string("content") == " ", try step.int("stop") == 0 else {
                    throw ANELMError("unsupported Strip decoder (only leading spaces are supported)")
                }
                stripLeading = try step.int("start")
            default:
                throw ANELMError("unsupported tokenizer decoder step '\(type)' in this position (supported: Replace…, ByteFallback, Fuse, Strip)")
            }
        }
        return .pieces(replacements: replacements, byteFallback: byteFallback, stripLeading: stripLeading)
    }

    /// Whether `<0xHH>` tokens decode to raw bytes.
    var hasByteFallback: Bool {
        if case .pieces(_, true, _) = self { return true }
        return false
    }

    /// The raw byte of a `<0xHH>` token when this decoder has ByteFallback.
    func fallbackByte(of token: String) -> UInt8? {
        hasByteFallback ? BPEModel.byteOfToken(token) : nil
    }

    /// Bytes for one token; `isFirst` matters for joining with spaces and for Strip.
    func bytes(of token: String, isFirst: Bool) -> [UInt8] {
        switch self {
        case .byteLevel:
            return ByteLevelAlphabet.decode(token)
        case .joinWithSpaces:
            return isFirst ? Array(token.utf8) : [0x20] + Array(token.utf8)
        case .pieces(let replacements, let byteFallback, let stripLeading):
            if byteFallback, let byte = BPEModel.byteOfToken(token) { return [byte] }
            var text = token
            for replacement in replacements {
                text = text.replacingOccurrences(of: replacement.pattern, with: replacement.content, options: .literal)
            }
            var bytes = Array(text.utf8)
            if isFirst && stripLeading > 0 {
                let spaces = bytes.prefix(stripLeading).prefix { $0 == 0x20 }.count
                bytes.removeFirst(spaces)
            }
            return bytes
        case .wordPiece(let prefix, let cleanup):
            var text = isFirst ? token : token.hasPrefix(prefix) ? String(token.dropFirst(prefix.count)) : " " + token
            if cleanup { text = Self.cleanUpTokenization(text) }
            return Array(text.utf8)
        }
    }

    /// `tokenizers`' `cleanup` of WordPiece output, applied to each token's text as it does.
    private static func cleanUpTokenization(_ text: String) -> String {
        let replacements = [
            (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"), (" do not", " don't"),
            (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
        ]
        return replacements.reduce(text) { $0.replacingOccurrences(of: $1.0, with: $1.1, options: .literal) }
    }
}
