/// The `pre_tokenizer` section of tokenizer.json: cuts text into the words BPE sees.
indirect enum PreTokenizer: Sendable {
    /// Splits with one of the known regexes; matches become their own pieces.
    case split(SplitPattern, removeMatches: Bool)
    /// Splits at each occurrence of a literal string, keeping it as `behavior` says.
    case splitLiteral([Unicode.Scalar], LiteralBehavior)
    /// Isolates each digit (or each run of digits).
    case digits(individual: Bool)
    /// Respells bytes with the GPT-2 alphabet, after an optional GPT-2 regex split.
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case sequence([PreTokenizer])
    /// BERT's (`BertPreTokenizer`): whitespace separates words and goes; each punctuation character is a word.
    case bert

    /// What happens to the delimiter of a literal split (`tokenizers`' SplitDelimiterBehavior).
    enum LiteralBehavior: Sendable {
        case removed, isolated, mergedWithPrevious, mergedWithNext
    }

    init(_ json: JSONNode) throws {
        let type = try json.string("type")
        switch type {
        case "Sequence":
            self = .sequence(try json.objects("pretokenizers").map(PreTokenizer.init))
        case "ByteLevel":
            self = .byteLevel(
                addPrefixSpace: try json.bool("add_prefix_space", default: true),
                useRegex: try json.bool("use_regex", default: true))
        case "Digits":
            self = .digits(individual: try json.bool("individual_digits", default: false))
        case "Split":
            let pattern = try json.object("pattern")
            if let literal = try pattern.optionalString("String") {
                self = try Self.literalSplit(literal, json)
                return
            }
            guard let regex = try pattern.optionalString("Regex") else {
                throw ANELMError("unsupported Split pre-tokenizer pattern (only known regexes are supported)")
            }
            guard let scanner = SplitPattern(regex: regex) else {
                throw ANELMError("unsupported Split pre-tokenizer regex \(regex)")
            }
            if try json.bool("invert", default: false) {
                throw ANELMError("unsupported Split pre-tokenizer with invert: true")
            }
            let behavior = try json.string("behavior")
            switch behavior {
            case "Isolated": self = .split(scanner, removeMatches: false)
            case "Removed": self = .split(scanner, removeMatches: true)
            default: throw ANELMError("unsupported Split pre-tokenizer behavior '\(behavior)'")
            }
        case "BertPreTokenizer":
            self = .bert
        default:
            throw ANELMError("unsupported tokenizer pre-tokenizer '\(type)' (supported: ByteLevel, Split, Digits, BertPreTokenizer, Sequence)")
        }
    }

    private static func literalSplit(_ literal: String, _ json: JSONNode) throws -> PreTokenizer {
        guard !literal.isEmpty else { throw ANELMError("Split pre-tokenizer with an empty string pattern") }
        if try json.bool("invert", default: false) {
            throw ANELMError("unsupported Split pre-tokenizer with invert: true")
        }
        let behavior = try json.string("behavior")
        let kept: LiteralBehavior
        switch behavior {
        case "Removed": kept = .removed
        case "Isolated": kept = .isolated
        case "MergedWithPrevious": kept = .mergedWithPrevious
        case "MergedWithNext": kept = .mergedWithNext
        default: throw ANELMError("unsupported Split pre-tokenizer behavior '\(behavior)'")
        }
        return .splitLiteral(Array(literal.unicodeScalars), kept)
    }

    /// Appends the pieces of `piece` to `out`.
    func split(_ piece: [Unicode.Scalar], into out: inout [[Unicode.Scalar]]) {
        switch self {
        case .sequence(let steps):
            var pieces = [piece]
            for step in steps {
                var next: [[Unicode.Scalar]] = []
                next.reserveCapacity(pieces.count)
                for p in pieces { step.split(p, into: &next) }
                pieces = next
            }
            out.append(contentsOf: pieces)
        case .split(let pattern, let removeMatches):
            Self.isolate(piece, ranges: pattern.matches(piece[...]), removeMatches: removeMatches, into: &out)
        case .splitLiteral(let needle, let behavior):
            var matches: [Range<Int>] = []
            var i = 0
            while i + needle.count <= piece.count {
                if needle.indices.allSatisfy({ piece[i + $0] == needle[$0] }) {
                    matches.append(i..<(i + needle.count))
                    i += needle.count
                } else {
                    i += 1
                }
            }
            switch behavior {
            case .removed: Self.isolate(piece, ranges: matches, removeMatches: true, into: &out)
            case .isolated: Self.isolate(piece, ranges: matches, removeMatches: false, into: &out)
            case .mergedWithPrevious:
                // Each delimiter closes the piece before it.
                var start = 0
                for match in matches {
                    out.append(Array(piece[start..<match.upperBound]))
                    start = match.upperBound
                }
                if start < piece.count { out.append(Array(piece[start...])) }
            case .mergedWithNext:
                // Each delimiter opens the piece after it.
                var start = 0
                for match in matches where match.lowerBound > start {
                    out.append(Array(piece[start..<match.lowerBound]))
                    start = match.lowerBound
                }
                if start < piece.count { out.append(Array(piece[start...])) }
            }
        case .digits(let individual):
            var ranges: [Range<Int>] = []
            var i = 0
            while i < piece.count {
                if UnicodeClass.isNumber(piece[i]) {
                    var j = i + 1
                    if !individual { while j < piece.count && UnicodeClass.isNumber(piece[j]) { j += 1 } }
                    ranges.append(i..<j)
                    i = j
                } else {
                    i += 1
                }
            }
            Self.isolate(piece, ranges: ranges, removeMatches: false, into: &out)
        case .bert:
            var start = 0
            for (i, scalar) in piece.enumerated() {
                let isSpace = UnicodeClass.isWhitespace(scalar)
                guard isSpace || BertNormalization.isPunctuation(scalar) else { continue }
                if i > start { out.append(Array(piece[start..<i])) }
                if !isSpace { out.append([scalar]) }
                start = i + 1
            }
            if start < piece.count { out.append(Array(piece[start...])) }
        case .byteLevel(let addPrefixSpace, let useRegex):
            var text = piece
            if addPrefixSpace && text.first != " " { text.insert(" ", at: 0) }
            if useRegex {
                for range in SplitPattern.gpt2.matches(text[...]) {
                    out.append(ByteLevelAlphabet.encode(text[range]))
                }
            } else if !text.isEmpty {
                out.append(ByteLevelAlphabet.encode(text[...]))
            }
        }
    }

    /// Matches as pieces of their own, with the text between them as pieces too.
    private static func isolate(
        _ piece: [Unicode.Scalar], ranges: [Range<Int>], removeMatches: Bool, into out: inout [[Unicode.Scalar]]
    ) {
        var last = 0
        for range in ranges {
            if range.lowerBound > last { out.append(Array(piece[last..<range.lowerBound])) }
            if !removeMatches && !range.isEmpty { out.append(Array(piece[range])) }
            last = range.upperBound
        }
        if last < piece.count { out.append(Array(piece[last...])) }
    }
}
