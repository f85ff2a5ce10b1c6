import Foundation

/// The `normalizer` section of tokenizer.json: rewrites text before it is split.
enum Normalizer: Sendable {
    case nfc, nfd, nfkc, nfkd, lowercase
    case sequence([Normalizer])

    init(_ json: JSONObject) throws {
        let type = try json.string("type")
        switch type {
        case "NFC": self = .nfc
        case "NFD": self = .nfd
        case "NFKC": self = .nfkc
        case "NFKD": self = .nfkd
        case "Lowercase": self = .lowercase
        case "Sequence": self = .sequence(try json.objects("normalizers").map(Normalizer.init))
        default: throw ANELMError("unsupported tokenizer normalizer '\(type)' (supported: NFC, NFD, NFKC, NFKD, Lowercase, Sequence)")
        }
    }

    func normalize(_ text: String) -> String {
        switch self {
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        case .lowercase: return text.lowercased()
        case .sequence(let steps): return steps.reduce(text) { $1.normalize($0) }
        }
    }
}
