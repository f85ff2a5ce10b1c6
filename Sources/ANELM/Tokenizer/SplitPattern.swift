/// The split regexes of GPT-2, Llama-3 and Qwen2, as hand-written scanners over Unicode scalars.
///
/// Each scanner returns what `regex.find_iter` would, in order; the patterns match every scalar, so
/// the matches tile the input.
enum SplitPattern: Equatable, Sendable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// with N = 3 (Llama-3) or 1 (Qwen2).
    case llama3(maxDigits: Int)

    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Regex =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Regex =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The scanner for a regex given as text, if it is one we implement.
    init?(regex: String) {
        switch regex {
        case Self.gpt2Regex: self = .gpt2
        case Self.llama3Regex: self = .llama3(maxDigits: 3)
        case Self.qwen2Regex: self = .llama3(maxDigits: 1)
        default: return nil
        }
    }

    /// Match ranges over `s`, in order.
    func matches(_ s: ArraySlice<Unicode.Scalar>) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var i = s.startIndex
        while i < s.endIndex {
            let end: Int
            switch self {
            case .gpt2: end = Self.gpt2Match(s, at: i)
            case .llama3(let maxDigits): end = Self.llama3Match(s, at: i, maxDigits: maxDigits)
            }
            result.append(i..<end)
            i = end
        }
        return result
    }

    // MARK: - Scanners

    /// Length of a contraction suffix after an apostrophe at `i - 1`, or nil.
    private static func contractionLength(_ s: ArraySlice<Unicode.Scalar>, at i: Int, ignoreCase: Bool) -> Int? {
        guard i < s.endIndex else { return nil }
        func fold(_ c: Unicode.Scalar) -> Unicode.Scalar {
            guard ignoreCase else { return c }
            if c.value >= 0x41 && c.value <= 0x5A { return Unicode.Scalar(c.value + 0x20) ?? c }
            if c == "\u{17F}" { return "s" }  // LATIN SMALL LETTER LONG S folds to s
            return c
        }
        let first = fold(s[i])
        switch first {
        case "s", "t", "m", "d": return 1
        case "r", "v", "l":
            guard i + 1 < s.endIndex else { return nil }
            let second = fold(s[i + 1])
            if (first == "r" || first == "v") && second == "e" { return 2 }
            if first == "l" && second == "l" { return 2 }
            return nil
        default: return nil
        }
    }

    @inline(__always)
    private static func run(_ s: ArraySlice<Unicode.Scalar>, from i: Int, while test: (Unicode.Scalar) -> Bool) -> Int {
        var j = i
        while j < s.endIndex && test(s[j]) { j += 1 }
        return j
    }

    /// End of `\s+(?!\S)|\s+` starting at `i`, with `j` the end of the whitespace run.
    @inline(__always)
    private static func whitespaceEnd(_ s: ArraySlice<Unicode.Scalar>, from i: Int, runEnd j: Int) -> Int {
        if j == s.endIndex || j - i < 2 { return j }
        return j - 1  // leave the last space to prefix the next word
    }

    private static func gpt2Match(_ s: ArraySlice<Unicode.Scalar>, at i: Int) -> Int {
        let c = s[i]
        if c == "'", let length = contractionLength(s, at: i + 1, ignoreCase: false) { return i + 1 + length }
        let hasSpace = c == " " && i + 1 < s.endIndex
        let body = hasSpace ? s[i + 1] : c
        let start = hasSpace ? i + 1 : i
        if UnicodeClass.isLetter(body) { return run(s, from: start, while: UnicodeClass.isLetter) }
        if UnicodeClass.isNumber(body) { return run(s, from: start, while: UnicodeClass.isNumber) }
        if UnicodeClass.isOther(body) { return run(s, from: start, while: UnicodeClass.isOther) }
        return whitespaceEnd(s, from: i, runEnd: run(s, from: i, while: UnicodeClass.isWhitespace))
    }

    private static func llama3Match(_ s: ArraySlice<Unicode.Scalar>, at i: Int, maxDigits: Int) -> Int {
        let c = s[i]
        let next: Unicode.Scalar? = i + 1 < s.endIndex ? s[i + 1] : nil
        if c == "'", let length = contractionLength(s, at: i + 1, ignoreCase: true) { return i + 1 + length }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if UnicodeClass.isLetter(c) { return run(s, from: i, while: UnicodeClass.isLetter) }
        if let next, UnicodeClass.isLetter(next), !UnicodeClass.isNewline(c), !UnicodeClass.isNumber(c) {
            return run(s, from: i + 1, while: UnicodeClass.isLetter)
        }
        // \p{N}{1,maxDigits}
        if UnicodeClass.isNumber(c) {
            var j = i
            while j < s.endIndex && j - i < maxDigits && UnicodeClass.isNumber(s[j]) { j += 1 }
            return j
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        if UnicodeClass.isOther(c) || (c == " " && next.map(UnicodeClass.isOther) == true) {
            let others = run(s, from: c == " " ? i + 1 : i, while: UnicodeClass.isOther)
            return run(s, from: others, while: UnicodeClass.isNewline)
        }
        // Whitespace: `\s*[\r\n]+` ends after the run's last newline, else `\s+(?!\S)|\s+`.
        let runEnd = run(s, from: i, while: UnicodeClass.isWhitespace)
        var k = runEnd - 1
        while k >= i {
            if UnicodeClass.isNewline(s[k]) { return k + 1 }
            k -= 1
        }
        return whitespaceEnd(s, from: i, runEnd: runEnd)
    }
}
