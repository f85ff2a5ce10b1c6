/// A token matched whole in the input before any splitting (`added_tokens` in tokenizer.json).
struct AddedToken: Sendable {
    let id: Int
    let content: String
    let special: Bool
    let singleWord: Bool
    let leftStrip: Bool
    let rightStrip: Bool
    /// Matched on normalized text (true) or on the raw input (false).
    let normalized: Bool

    init(
        id: Int, content: String, special: Bool, singleWord: Bool = false, leftStrip: Bool = false,
        rightStrip: Bool = false, normalized: Bool
    ) {
        self.id = id
        self.content = content
        self.special = special
        self.singleWord = singleWord
        self.leftStrip = leftStrip
        self.rightStrip = rightStrip
        self.normalized = normalized
    }

    init(_ json: JSONNode) throws {
        let special = try json.bool("special", default: false)
        self.init(
            id: try json.int("id"), content: try json.string("content"), special: special,
            singleWord: try json.bool("single_word", default: false), leftStrip: try json.bool("lstrip", default: false),
            rightStrip: try json.bool("rstrip", default: false), normalized: try json.bool("normalized", default: !special))
    }
}

/// Finds added tokens in text, leftmost-longest as `tokenizers` does, honouring lstrip/rstrip/single_word.
struct AddedTokenMatcher: Sendable {
    /// One piece of input: either an added token's id or text still to tokenize (`offset`: where it starts).
    enum Segment {
        case token(Int)
        case text([Unicode.Scalar], offset: Int)
    }

    private struct Pattern: Sendable {
        let scalars: [Unicode.Scalar]
        let token: AddedToken
    }

    /// Candidates by first scalar, longest first.
    private let byFirstScalar: [Unicode.Scalar: [Pattern]]

    init(_ tokens: [AddedToken], normalize: (String) -> String) {
        var table: [Unicode.Scalar: [Pattern]] = [:]
        for token in tokens {
            let content = token.normalized ? normalize(token.content) : token.content
            let scalars = Array(content.unicodeScalars)
            guard let first = scalars.first else { continue }
            table[first, default: []].append(Pattern(scalars: scalars, token: token))
        }
        for key in table.keys { table[key]?.sort { $0.scalars.count > $1.scalars.count } }
        byFirstScalar = table
    }

    var isEmpty: Bool { byFirstScalar.isEmpty }
    /// Whether any of the tokens is special (only those are kept out of literal text).
    var hasSpecialTokens: Bool { byFirstScalar.values.contains { $0.contains { $0.token.special } } }

    /// Cuts `text` at added tokens. A special token is never matched where it would overlap one of `literal`
    /// (sorted, disjoint scalar ranges): that text stays ordinary text, as with `split_special_tokens`.
    func split(_ text: [Unicode.Scalar], literal: [Range<Int>] = []) -> [Segment] {
        if byFirstScalar.isEmpty { return text.isEmpty ? [] : [.text(text, offset: 0)] }
        var segments: [Segment] = []
        var textStart = 0  // start of text not yet emitted
        var i = 0
        var nextLiteral = 0  // first literal range not wholly before i (i only grows)
        func overlapsLiteral(_ range: Range<Int>) -> Bool {
            while nextLiteral < literal.count && literal[nextLiteral].upperBound <= range.lowerBound { nextLiteral += 1 }
            return nextLiteral < literal.count && literal[nextLiteral].lowerBound < range.upperBound
        }
        while i < text.count {
            guard let candidates = byFirstScalar[text[i]],
                let match = candidates.first(where: {
                    Self.matches($0.scalars, in: text, at: i)
                        && !($0.token.special && overlapsLiteral(i..<(i + $0.scalars.count)))
                })
            else {
                i += 1
                continue
            }
            var start = i
            var stop = i + match.scalars.count
            let token = match.token
            if token.singleWord {
                let before = start == 0 || !UnicodeClass.isWordCharacter(text[start - 1])
                let after = stop == text.count || !UnicodeClass.isWordCharacter(text[stop])
                if !before || !after {
                    i = stop
                    continue
                }
            }
            if token.leftStrip {
                while start > textStart && text[start - 1].properties.isWhitespace { start -= 1 }
            }
            if token.rightStrip {
                while stop < text.count && text[stop].properties.isWhitespace { stop += 1 }
            }
            if start > textStart { segments.append(.text(Array(text[textStart..<start]), offset: textStart)) }
            segments.append(.token(token.id))
            textStart = stop
            i = stop
        }
        if textStart < text.count { segments.append(.text(Array(text[textStart...]), offset: textStart)) }
        return segments
    }

    /// Where the texts of special tokens occur in `text`, leftmost-longest, whatever surrounds them.
    func specialTokenRanges(in text: [Unicode.Scalar]) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var i = 0
        while i < text.count {
            guard let candidates = byFirstScalar[text[i]],
                let match = candidates.first(where: { $0.token.special && Self.matches($0.scalars, in: text, at: i) })
            else {
                i += 1
                continue
            }
            ranges.append(i..<(i + match.scalars.count))
            i += match.scalars.count
        }
        return ranges
    }

    private static func matches(_ pattern: [Unicode.Scalar], in text: [Unicode.Scalar], at i: Int) -> Bool {
        guard i + pattern.count <= text.count else { return false }
        for k in 0..<pattern.count where text[i + k] != pattern[k] { return false }
        return true
    }
}
