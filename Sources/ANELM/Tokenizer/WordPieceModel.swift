/// What the tokenizer asks of its model stage: the vocabulary, and the ids of one pre-tokenized word.
protocol SubwordModel: AnyObject, Sendable {
    var vocab: Vocabulary { get }
    func tokenize(_ word: [Unicode.Scalar], into out: inout [Int])
}

extension BPEModel: SubwordModel {}

/// WordPiece (BERT): each word is cut greedily into the longest vocabulary entries from the left, pieces after
/// the first spelled with the continuation prefix (`##`). A word with a part no entry matches, or longer than
/// `maxInputCharsPerWord` scalars, is the unknown token as a whole.
final class WordPieceModel: SubwordModel, @unchecked Sendable {
    let vocab: Vocabulary
    private let unknownId: Int
    private let prefix: [Unicode.Scalar]
    private let maxInputCharsPerWord: Int

    init(vocab: Vocabulary, unknownToken: String, continuingSubwordPrefix: String, maxInputCharsPerWord: Int) throws {
        guard let unknownId = vocab[unknownToken] else {
            throw ANELMError("WordPiece unknown token \(quoted(unknownToken)) is not in the vocabulary")
        }
        guard maxInputCharsPerWord > 0 else { throw ANELMError("WordPiece max_input_chars_per_word must be positive, got \(maxInputCharsPerWord)") }
        self.vocab = vocab
        self.unknownId = unknownId
        self.prefix = Array(continuingSubwordPrefix.unicodeScalars)
        self.maxInputCharsPerWord = maxInputCharsPerWord
    }

    /// From tokenizer.json's `model` section (`type` "WordPiece").
    convenience init(_ json: JSONNode, vocab: Vocabulary) throws {
        try self.init(
            vocab: vocab, unknownToken: try json.optionalString("unk_token") ?? "[UNK]",
            continuingSubwordPrefix: try json.optionalString("continuing_subword_prefix") ?? "##",
            maxInputCharsPerWord: json.isNull("max_input_chars_per_word") ? 100 : try json.int("max_input_chars_per_word"))
    }

    func tokenize(_ word: [Unicode.Scalar], into out: inout [Int]) {
        if word.isEmpty { return }
        guard word.count <= maxInputCharsPerWord else {
            out.append(unknownId)
            return
        }
        var pieces: [Int] = []
        var start = 0
        while start < word.count {
            var end = word.count
            var found: Int?
            while end > start {
                var candidate = String.UnicodeScalarView()
                if start > 0 { candidate.append(contentsOf: prefix) }
                candidate.append(contentsOf: word[start..<end])
                if let id = vocab[String(candidate)] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let found else {
                out.append(unknownId)
                return
            }
            pieces.append(found)
            start = end
        }
        out.append(contentsOf: pieces)
    }
}

/// BERT's normalizer (`BertNormalizer`), in `tokenizers`' order: control characters removed and whitespace made
/// spaces, CJK ideographs spaced apart, accents stripped (NFD, marks removed), lowercased scalar by scalar.
struct BertNormalization: Sendable {
    let cleanText: Bool
    let handleChineseCharacters: Bool
    let stripAccents: Bool
    let lowercase: Bool

    init(_ json: JSONNode) throws {
        cleanText = try json.bool("clean_text", default: true)
        handleChineseCharacters = try json.bool("handle_chinese_chars", default: true)
        lowercase = try json.bool("lowercase", default: true)
        // null follows `lowercase`, as in BERT's original tokenizer.
        stripAccents = try json.optionalBool("strip_accents") ?? lowercase
    }

    func normalize(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if cleanText {
                if scalar.value == 0 || scalar.value == 0xFFFD || Self.isControl(scalar) { continue }
                if UnicodeClass.isWhitespace(scalar) {
                    out.append(" ")
                    continue
                }
            }
            if handleChineseCharacters && Self.isCJKIdeograph(scalar) {
                out.append(" ")
                out.append(scalar)
                out.append(" ")
            } else {
                out.append(scalar)
            }
        }
        if stripAccents {
            // Decomposed per scalar so that no composition or reordering across the text happens; marks go.
            var stripped = String.UnicodeScalarView()
            for scalar in String(out).decomposedStringWithCanonicalMapping.unicodeScalars
            where scalar.properties.generalCategory != .nonspacingMark {
                stripped.append(scalar)
            }
            out = stripped
        }
        if lowercase {
            var lowered = String.UnicodeScalarView()
            for scalar in out { lowered.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars) }
            out = lowered
        }
        return String(out)
    }

    /// Rust's `char::is_control` as `tokenizers` defines it: any `C*` category except tab, newline and return.
    private static func isControl(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        switch s.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }

    /// The CJK Unified Ideographs blocks BERT treats as words of their own.
    private static func isCJKIdeograph(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F, 0x2B920...0x2CEAF, 0xF900...0xFAFF,
            0x2F800...0x2FA1F:
            return true
        default: return false
        }
    }

    /// BERT's punctuation: ASCII punctuation (symbols such as `$` and `^` included) and Unicode `P*`.
    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 {
            let v = s.value
            return (v >= 0x21 && v <= 0x2F) || (v >= 0x3A && v <= 0x40) || (v >= 0x5B && v <= 0x60) || (v >= 0x7B && v <= 0x7E)
        }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation, .finalPunctuation,
            .otherPunctuation:
            return true
        default: return false
        }
    }
}
