/// A grammar expression as written in GBNF (llama.cpp's grammar syntax), before compilation.
indirect enum GrammarExpression {
    case sequence([GrammarExpression])
    case alternatives([GrammarExpression])
    /// Unicode scalar values, matched in order.
    case literal([UInt32])
    /// Inclusive code point ranges; `negated` matches every character outside them.
    case characterClass([ClosedRange<UInt32>], negated: Bool)
    /// `.`: any character.
    case anyCharacter
    case rule(String, line: Int, column: Int)
    /// `max` nil: unbounded.
    case repetition(GrammarExpression, min: Int, max: Int?)
}

/// One `name ::= body` definition.
struct GrammarRuleDefinition {
    let name: String
    let body: GrammarExpression
    let line: Int
    let column: Int
}

/// Parses GBNF: `name ::= alternatives`, `|`, `( … )`, `*` `+` `?` `{m}` `{m,}` `{m,n}`, `"literals"`,
/// `[classes]` with ranges and `^`, `.`, escapes (`\n \r \t \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH`) and `#` comments.
/// Newlines are plain whitespace: a rule ends where the next `name ::=` begins.
struct GBNFParser {
    private let scalars: [Unicode.Scalar]
    private var index = 0
    private var line = 1
    private var column = 1
    /// Open parentheses: bounded, so a hostile file cannot exhaust the stack.
    private var depth = 0

    init(_ text: String) { scalars = Array(text.unicodeScalars) }

    static func parse(_ text: String) throws -> [GrammarRuleDefinition] {
        var parser = GBNFParser(text)
        return try parser.parseRules()
    }

    private mutating func parseRules() throws -> [GrammarRuleDefinition] {
        var rules: [GrammarRuleDefinition] = []
        skipSpace()
        while !atEnd {
            let (line, column) = (self.line, self.column)
            let name = try parseName()
            skipSpace()
            guard consume("::=") else { throw error("expected '::=' after rule name '\(name)'") }
            let body = try parseAlternatives(nested: false)
            rules.append(GrammarRuleDefinition(name: name, body: body, line: line, column: column))
            skipSpace()
            if let c = peek, !isNameCharacter(c) { throw error("unexpected character '\(c)'") }
        }
        if rules.isEmpty { throw ANELMError("grammar: no rules") }
        return rules
    }

    private mutating func parseAlternatives(nested: Bool) throws -> GrammarExpression {
        var alternatives = [try parseSequence(nested: nested)]
        skipSpace()
        while peek == "|" {
            advance()
            alternatives.append(try parseSequence(nested: nested))
            skipSpace()
        }
        return alternatives.count == 1 ? alternatives[0] : .alternatives(alternatives)
    }

    private mutating func parseSequence(nested: Bool) throws -> GrammarExpression {
        var items: [GrammarExpression] = []
        while true {
            skipSpace()
            guard let c = peek else { break }
            if c == "|" || c == ")" { break }
            if isNameCharacter(c) {
                // `name ::=` starts the next rule.
                if !nested && startsRuleDefinition() { break }
                let (line, column) = (self.line, self.column)
                items.append(.rule(try parseName(), line: line, column: column))
            } else if c == "\"" {
                items.append(.literal(try parseLiteral()))
            } else if c == "[" {
                items.append(try parseClass())
            } else if c == "." {
                advance()
                items.append(.anyCharacter)
            } else if c == "(" {
                advance()
                depth += 1
                guard depth <= 100 else { throw error("groups nested deeper than 100") }
                let inner = try parseAlternatives(nested: true)
                depth -= 1
                skipSpace()
                guard peek == ")" else { throw error("expected ')'") }
                advance()
                items.append(inner)
            } else if c == "*" || c == "+" || c == "?" || c == "{" {
                guard let last = items.popLast() else { throw error("'\(c)' has nothing before it to repeat") }
                items.append(try parseRepetition(of: last))
            } else {
                throw error("unexpected character '\(c)'")
            }
        }
        if items.count == 1 { return items[0] }
        return .sequence(items)
    }

    private mutating func parseRepetition(of item: GrammarExpression) throws -> GrammarExpression {
        guard let c = peek else { throw error("unexpected end") }
        advance()
        switch c {
        case "*": return .repetition(item, min: 0, max: nil)
        case "+": return .repetition(item, min: 1, max: nil)
        case "?": return .repetition(item, min: 0, max: 1)
        default:
            skipSpace()
            let low = try parseInteger()
            skipSpace()
            var high: Int? = low
            if peek == "," {
                advance()
                skipSpace()
                high = peek == "}" ? nil : try parseInteger()
                skipSpace()
            }
            guard peek == "}" else { throw error("expected '}' to close the repetition") }
            advance()
            if let high, high < low { throw error("repetition {\(low),\(high)}: the maximum is below the minimum") }
            return .repetition(item, min: low, max: high)
        }
    }

    private mutating func parseInteger() throws -> Int {
        var value = 0
        var digits = 0
        while let c = peek, c >= "0", c <= "9" {
            let digit = Int(c.value - 48)
            value = value * 10 + digit
            digits += 1
            guard value <= 10_000 else { throw error("repetition count too large (at most 10000)") }
            advance()
        }
        guard digits > 0 else { throw error("expected a number") }
        return value
    }

    private mutating func parseName() throws -> String {
        var name = ""
        while let c = peek, isNameCharacter(c) {
            name.unicodeScalars.append(c)
            advance()
        }
        guard !name.isEmpty else { throw error("expected a rule name") }
        return name
    }

    private mutating func parseLiteral() throws -> [UInt32] {
        advance()  // "
        var values: [UInt32] = []
        while true {
            guard let c = peek else { throw error("unterminated string literal") }
            if c == "\"" {
                advance()
                return values
            }
            values.append(try parseCharacter())
        }
    }

    private mutating func parseClass() throws -> GrammarExpression {
        advance()  // [
        var negated = false
        if peek == "^" {
            negated = true
            advance()
        }
        var ranges: [ClosedRange<UInt32>] = []
        while true {
            guard let c = peek else { throw error("unterminated character class") }
            if c == "]" {
                advance()
                break
            }
            let low = try parseCharacter()
            if peek == "-", let next = peekAt(1), next != "]" {
                advance()
                let high = try parseCharacter()
                guard low <= high else { throw error("character range is backwards") }
                ranges.append(low...high)
            } else {
                ranges.append(low...low)
            }
        }
        return .characterClass(ranges, negated: negated)
    }

    /// One character of a literal or class, escapes decoded.
    private mutating func parseCharacter() throws -> UInt32 {
        guard let c = peek else { throw error("unexpected end") }
        if c == "\n" { throw error("newline inside a literal or class (write \\n)") }
        advance()
        guard c == "\\" else { return c.value }
        guard let e = peek else { throw error("unfinished escape") }
        advance()
        switch e {
        case "n": return 0x0A
        case "r": return 0x0D
        case "t": return 0x09
        case "\\", "\"", "[", "]", "-", "^", "/", "'": return e.value
        case "x": return try parseHex(digits: 2)
        case "u": return try parseHex(digits: 4)
        case "U": return try parseHex(digits: 8)
        default: throw error("unknown escape '\\\(e)'")
        }
    }

    private mutating func parseHex(digits: Int) throws -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<digits {
            guard let c = peek, let digit = UInt32(String(c), radix: 16) else { throw error("expected \(digits) hex digits") }
            value = value * 16 + digit
            advance()
        }
        guard value <= 0x10FFFF, !(0xD800...0xDFFF).contains(value) else { throw error("escape is not a Unicode scalar value") }
        return value
    }

    // MARK: - Characters

    private var atEnd: Bool { index >= scalars.count }
    private var peek: Unicode.Scalar? { index < scalars.count ? scalars[index] : nil }
    private func peekAt(_ offset: Int) -> Unicode.Scalar? { index + offset < scalars.count ? scalars[index + offset] : nil }

    private mutating func advance() {
        if scalars[index] == "\n" {
            line += 1
            column = 1
        } else {
            column += 1
        }
        index += 1
    }

    private mutating func consume(_ text: String) -> Bool {
        let expected = Array(text.unicodeScalars)
        guard index + expected.count <= scalars.count, Array(scalars[index..<(index + expected.count)]) == expected else { return false }
        for _ in expected { advance() }
        return true
    }

    private mutating func skipSpace() {
        while let c = peek {
            if c == " " || c == "\t" || c == "\n" || c == "\r" {
                advance()
            } else if c == "#" {
                while let d = peek, d != "\n" { advance() }
            } else {
                break
            }
        }
    }

    private func isNameCharacter(_ c: Unicode.Scalar) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "-" || c == "_"
    }

    /// Whether a name followed by `::=` starts here.
    private func startsRuleDefinition() -> Bool {
        var i = index
        while i < scalars.count, isNameCharacter(scalars[i]) { i += 1 }
        while i < scalars.count, scalars[i] == " " || scalars[i] == "\t" { i += 1 }
        return i + 2 < scalars.count && scalars[i] == ":" && scalars[i + 1] == ":" && scalars[i + 2] == "="
    }

    private func error(_ message: String) -> ANELMError {
        ANELMError("grammar: line \(line), column \(column): \(message)")
    }
}
