/// A JSON schema `pattern` as GBNF for the inside of a JSON string: the regex constrains the string's value,
/// the grammar produces its JSON spelling (quotes, backslashes and control characters escaped).
///
/// Supported: literals, escapes (`\d \w \s \D \W \S`, `\t \n \r \f \v`, `\xHH`, `\uHHHH`, escaped
/// punctuation), `.`, classes with ranges and negation, groups `( )` and `(?: )`, `|`, quantifiers
/// `* + ? {n} {n,} {n,m}` (lazy `?` accepted: same language), `^` at the start and `$` at the end.
struct RegexToGBNF {
    private let scalars: [Unicode.Scalar]
    private var index = 0
    private let path: String

    static func translate(_ pattern: String, path: String) throws -> String {
        var parser = RegexToGBNF(scalars: Array(pattern.unicodeScalars), path: path)
        let anchoredStart = parser.peek == "^"
        if anchoredStart { parser.index += 1 }
        var body = try parser.alternation(depth: 0)
        guard parser.index == parser.scalars.count else { throw parser.error("unexpected '\(parser.scalars[parser.index])'") }
        if !parser.anchoredEnd { body = "( \(body) ) \(anyText)" }
        if !anchoredStart { body = "\(anyText) ( \(body) )" }
        return body
    }

    private var anchoredEnd = false

    private init(scalars: [Unicode.Scalar], path: String) {
        self.scalars = scalars
        self.path = path
    }

    /// Any text of printable characters (used for unanchored ends).
    private static var anyText: String { "( " + characters(UTF8Ranges.scalarRanges([0x20...0x10FFFF], negated: false)) + " )*" }

    private var peek: Unicode.Scalar? { index < scalars.count ? scalars[index] : nil }

    private func error(_ message: String) -> ANELMError {
        ANELMError("JSON schema \(path): pattern: \(message) (at character \(index + 1))")
    }

    private mutating func alternation(depth: Int) throws -> String {
        guard depth < 64 else { throw error("groups nested too deeply") }
        var options = [try concatenation(depth: depth)]
        while peek == "|" {
            index += 1
            options.append(try concatenation(depth: depth))
        }
        return options.count == 1 ? options[0] : options.map { "( \($0) )" }.joined(separator: " | ")
    }

    private mutating func concatenation(depth: Int) throws -> String {
        var items: [String] = []
        while let c = peek, c != "|", c != ")" {
            if c == "$" {
                index += 1
                guard depth == 0, index == scalars.count else { throw error("'$' is only supported at the end") }
                anchoredEnd = true
                break
            }
            var atom = try self.atom(depth: depth)
            if let quantifier = try quantifier() { atom = "( \(atom) )\(quantifier)" }
            items.append(atom)
        }
        return items.isEmpty ? "\"\"" : items.joined(separator: " ")
    }

    private mutating func quantifier() throws -> String? {
        guard let c = peek else { return nil }
        var out: String
        switch c {
        case "*", "+", "?":
            index += 1
            out = String(c)
        case "{":
            let start = index
            index += 1
            var text = ""
            while let d = peek, d != "}" {
                text.unicodeScalars.append(d)
                index += 1
            }
            guard peek == "}" else {
                index = start
                throw error("unterminated '{'")
            }
            index += 1
            let parts = text.split(separator: ",", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), let low = Int(parts[0]), low <= 10_000,
                parts.count == 1 || parts[1].isEmpty || (Int(parts[1]).map { $0 >= low && $0 <= 10_000 } ?? false)
            else {
                index = start
                throw error("bad repetition '{\(text)}'")
            }
            out = "{\(text)}"
        default:
            return nil
        }
        if peek == "?" { index += 1 }  // lazy: the same strings
        if peek == "+" || peek == "*" || peek == "{" { throw error("possessive or stacked quantifiers are not supported") }
        return out
    }

    private mutating func atom(depth: Int) throws -> String {
        guard let c = peek else { throw error("unexpected end") }
        index += 1
        switch c {
        case "(":
            if peek == "?" {
                guard index + 1 < scalars.count, scalars[index + 1] == ":" else { throw error("only (?: ) groups are supported") }
                index += 2
            }
            let inner = try alternation(depth: depth + 1)
            guard peek == ")" else { throw error("missing ')'") }
            index += 1
            return "( \(inner) )"
        case "[":
            return Self.characters(try characterClass())
        case ".":
            return Self.characters(UTF8Ranges.scalarRanges([0x20...0x10FFFF], negated: false))
        case "\\":
            let (ranges, negated) = try escape(inClass: false)
            return Self.characters(UTF8Ranges.scalarRanges(ranges, negated: negated).flatMap(Self.printable(negated)))
        case "^": throw error("'^' is only supported at the start")
        case "*", "+", "?", "{": throw error("'\(c)' has nothing to repeat")
        default:
            return Self.characters([c.value...c.value])
        }
    }

    /// Negated sets never produce control characters.
    private static func printable(_ negated: Bool) -> (ClosedRange<UInt32>) -> [ClosedRange<UInt32>] {
        { range in
            guard negated else { return [range] }
            if range.upperBound < 0x20 { return [] }
            return [max(range.lowerBound, 0x20)...range.upperBound]
        }
    }

    private mutating func characterClass() throws -> [ClosedRange<UInt32>] {
        var negated = false
        if peek == "^" {
            negated = true
            index += 1
        }
        var ranges: [ClosedRange<UInt32>] = []
        var first = true
        while true {
            guard let c = peek else { throw error("unterminated '['") }
            if c == "]" && !first {
                index += 1
                break
            }
            first = false
            index += 1
            let low: UInt32
            if c == "\\" {
                let (set, setNegated) = try escape(inClass: true)
                if setNegated || set.count != 1 || set[0].count != 1 {
                    ranges += UTF8Ranges.scalarRanges(set, negated: setNegated)
                    continue
                }
                low = set[0].lowerBound
            } else {
                low = c.value
            }
            if peek == "-", index + 1 < scalars.count, scalars[index + 1] != "]" {
                index += 1
                guard let d = peek else { throw error("unterminated '['") }
                index += 1
                var high = d.value
                if d == "\\" {
                    let (set, setNegated) = try escape(inClass: true)
                    guard !setNegated, set.count == 1, set[0].count == 1 else { throw error("a class cannot end a range") }
                    high = set[0].lowerBound
                }
                guard low <= high else { throw error("range is backwards") }
                ranges.append(low...high)
            } else {
                ranges.append(low...low)
            }
        }
        let result = UTF8Ranges.scalarRanges(ranges, negated: negated)
        return negated ? result.flatMap(Self.printable(true)) : result
    }

    /// After a backslash: the characters it stands for.
    private mutating func escape(inClass: Bool) throws -> ([ClosedRange<UInt32>], Bool) {
        guard let e = peek else { throw error("unfinished escape") }
        index += 1
        let digits: [ClosedRange<UInt32>] = [0x30...0x39]
        let word: [ClosedRange<UInt32>] = [0x30...0x39, 0x41...0x5A, 0x5F...0x5F, 0x61...0x7A]
        let space: [ClosedRange<UInt32>] = [0x09...0x0D, 0x20...0x20]
        switch e {
        case "d": return (digits, false)
        case "D": return (digits, true)
        case "w": return (word, false)
        case "W": return (word, true)
        case "s": return (space, false)
        case "S": return (space, true)
        case "t": return ([0x09...0x09], false)
        case "n": return ([0x0A...0x0A], false)
        case "r": return ([0x0D...0x0D], false)
        case "f": return ([0x0C...0x0C], false)
        case "v": return ([0x0B...0x0B], false)
        case "x", "u":
            let count = e == "x" ? 2 : 4
            guard index + count <= scalars.count, let value = UInt32(String(String.UnicodeScalarView(scalars[index..<(index + count)])), radix: 16),
                Unicode.Scalar(value) != nil
            else { throw error("bad \\\(e) escape") }
            index += count
            return ([value...value], false)
        default:
            let isPunctuation = e.isASCII && !isASCIIAlphanumeric(e) && e.value >= 0x20
            guard isPunctuation else { throw error("unsupported escape '\\\(e)'") }
            return ([e.value...e.value], false)
        }
    }

    /// The JSON spelling of any one character of `ranges`.
    static func characters(_ ranges: [ClosedRange<UInt32>]) -> String {
        var plain: [ClosedRange<UInt32>] = []
        var escaped: [String] = []
        for range in ranges {
            var low = range.lowerBound
            while low <= range.upperBound {
                if low < 0x20 || low == 0x22 || low == 0x5C {
                    if let scalar = Unicode.Scalar(low) {
                        escaped.append(JSONSchemaCompiler.literal(String(JSONValue.string(String(Character(scalar))).text.dropFirst().dropLast())))
                    }
                    low += 1
                    continue
                }
                var high = range.upperBound
                if low < 0x22 { high = min(high, 0x21) } else if low < 0x5C { high = min(high, 0x5B) }
                plain.append(low...high)
                if high == UInt32.max { break }
                low = high + 1
            }
        }
        var options: [String] = []
        if !plain.isEmpty {
            options.append(
                "["
                    + plain.map { r in
                        r.lowerBound == r.upperBound
                            ? JSONSchemaCompiler.classCharacter(r.lowerBound)
                            : JSONSchemaCompiler.classCharacter(r.lowerBound) + "-" + JSONSchemaCompiler.classCharacter(r.upperBound)
                    }.joined() + "]")
        }
        options += escaped
        if options.isEmpty { return "[^\\x00-\\U0010FFFF]" }
        return options.count == 1 ? options[0] : "( " + options.joined(separator: " | ") + " )"
    }
}
