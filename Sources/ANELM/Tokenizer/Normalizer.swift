import Foundation

/// The `normalizer` section of tokenizer.json: rewrites text before it is split.
enum Normalizer: Sendable {
    case nfc, nfd, nfkc, nfkd, lowercase
    /// Every occurrence of a literal string replaced (SentencePiece-style: " " → "▁").
    case replace(pattern: String, content: String)
    /// A string put in front of non-empty text.
    case prepend(String)
    case sequence([Normalizer])
    /// BERT's: clean, CJK spacing, accent stripping, lowercasing (`BertNormalizer`).
    case bert(BertNormalization)

    init(_ json: JSONNode) throws {
        let type = try json.string("type")
        switch type {
        case "NFC": self = .nfc
        case "NFD": self = .nfd
        case "NFKC": self = .nfkc
        case "NFKD": self = .nfkd
        case "Lowercase": self = .lowercase
        case "Sequence": self = .sequence(try json.objects("normalizers").map(Normalizer.init))
        case "Replace":
            let pattern = try json.object("pattern")
            guard let literal = try pattern.optionalString("String") else {
                throw ANELMError("unsupported Replace normalizer pattern (only a literal String is supported)")
            }
            guard !literal.isEmpty else { throw ANELMError("Replace normalizer with an empty pattern") }
            self = .replace(pattern: literal, content: try json.string("content"))
        case "Prepend": self = .prepend(try json.string("prepend"))
        case "BertNormalizer": self = .bert(try BertNormalization(json))
        default:
            throw ANELMError("unsupported tokenizer normalizer '\(type)' (supported: NFC, NFD, NFKC, NFKD, Lowercase, Replace, Prepend, BertNormalizer, Sequence)")
        }
    }

    func normalize(_ text: String) -> String {
        switch self {
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        case .lowercase: return text.lowercased()
        case .replace(let pattern, let content): return Self.replace(pattern, with: content, in: text)
        case .prepend(let prefix): return text.isEmpty ? text : prefix + text
        case .sequence(let steps): return steps.reduce(text) { $1.normalize($0) }
        case .bert(let bert): return bert.normalize(text)
        }
    }

    /// Literal replacement on Unicode scalars (Foundation's would compare by grapheme clusters).
    private static func replace(_ pattern: String, with content: String, in text: String) -> String {
        let needle = Array(pattern.unicodeScalars)
        let replacement = Array(content.unicodeScalars)
        let scalars = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < scalars.count {
            if scalars[i] == needle[0], i + needle.count <= scalars.count,
                needle.indices.allSatisfy({ scalars[i + $0] == needle[$0] })
            {
                out.append(contentsOf: replacement)
                i += needle.count
            } else {
                out.append(scalars[i])
                i += 1
            }
        }
        return String(out)
    }
}
