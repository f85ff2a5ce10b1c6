import Foundation

/// One token of a template: raw text, a tag delimiter, or a piece of an expression.
struct JinjaToken: Sendable {
    enum Kind: Sendable, Equatable {
        case text(String)
        case blockBegin, blockEnd, variableBegin, variableEnd
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        case op(String)
        case end
    }
    let kind: Kind
    let line: Int
}

/// Splits a template into tokens, applying jinja2's whitespace control with
/// `trim_blocks=True, lstrip_blocks=True` and dropping one trailing newline (`keep_trailing_newline=False`).
struct JinjaLexer {
    private let bytes: [UInt8]
    private var position = 0
    private var line = 1
    private(set) var tokens: [JinjaToken] = []

    static func tokenize(_ source: String) throws -> [JinjaToken] {
        var bytes = Array(source.utf8)
        if bytes.last == 0x0a {
            bytes.removeLast()
            if bytes.last == 0x0d { bytes.removeLast() }
        } else if bytes.last == 0x0d {
            bytes.removeLast()
        }
        var lexer = JinjaLexer(bytes: bytes)
        try lexer.run()
        return lexer.tokens
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private func error(_ message: String) -> ANELMError { ANELMError("chat template syntax error at line \(line): \(message)") }

    private func starts(_ text: String, at index: Int) -> Bool {
        let t = Array(text.utf8)
        guard index + t.count <= bytes.count else { return false }
        for i in 0..<t.count where bytes[index + i] != t[i] { return false }
        return true
    }

    private static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d || c == 0x0b || c == 0x0c }

    private mutating func run() throws {
        var pendingText: [UInt8] = []
        var textStartLine = 1
        var textIsLineStart = true
        var stripNextLeading = false

        func countLines(_ slice: ArraySlice<UInt8>) -> Int { slice.reduce(0) { $0 + ($1 == 0x0a ? 1 : 0) } }

        while position <= bytes.count {
            // Find the next tag start.
            var tagStart = position
            var found: UInt8? = nil
            while tagStart + 1 < bytes.count {
                if bytes[tagStart] == UInt8(ascii: "{") {
                    let n = bytes[tagStart + 1]
                    if n == UInt8(ascii: "{") || n == UInt8(ascii: "%") || n == UInt8(ascii: "#") {
                        found = n
                        break
                    }
                }
                tagStart += 1
            }
            let textEnd = found == nil ? bytes.count : tagStart
            pendingText = Array(bytes[position..<textEnd])
            textStartLine = line
            if stripNextLeading {
                while let f = pendingText.first, Self.isSpace(f) { pendingText.removeFirst() }
                stripNextLeading = false
            }
            line += countLines(bytes[position..<textEnd])
            guard let kind = found else {
                if !pendingText.isEmpty { tokens.append(JinjaToken(kind: .text(String(decoding: pendingText, as: UTF8.self)), line: textStartLine)) }
                return
            }
            // Modifier right after the opening delimiter.
            var cursor = tagStart + 2
            let modifier: UInt8? = cursor < bytes.count && (bytes[cursor] == UInt8(ascii: "-") || bytes[cursor] == UInt8(ascii: "+")) ? bytes[cursor] : nil
            if modifier != nil { cursor += 1 }
            if modifier == UInt8(ascii: "-") {
                while let l = pendingText.last, Self.isSpace(l) { pendingText.removeLast() }
            } else if kind != UInt8(ascii: "{") && modifier != UInt8(ascii: "+") {
                // lstrip_blocks: drop spaces/tabs between the line start and a block or comment tag.
                var i = pendingText.count
                while i > 0, pendingText[i - 1] == 0x20 || pendingText[i - 1] == 0x09 { i -= 1 }
                let atLineStart = i > 0 ? pendingText[i - 1] == 0x0a : textIsLineStart
                if atLineStart { pendingText.removeLast(pendingText.count - i) }
            }
            if !pendingText.isEmpty { tokens.append(JinjaToken(kind: .text(String(decoding: pendingText, as: UTF8.self)), line: textStartLine)) }
            position = cursor

            var rightStrip = false
            var rightPlus = false
            if kind == UInt8(ascii: "#") {
                var end = position
                while end + 1 < bytes.count, !(bytes[end] == UInt8(ascii: "#") && bytes[end + 1] == UInt8(ascii: "}")) { end += 1 }
                guard end + 1 < bytes.count else { throw error("Missing end of comment tag") }
                if end > position, bytes[end - 1] == UInt8(ascii: "-") { rightStrip = true }
                if end > position, bytes[end - 1] == UInt8(ascii: "+") { rightPlus = true }
                line += countLines(bytes[position..<end])
                position = end + 2
            } else if kind == UInt8(ascii: "%"), let rawEnd = try lexRawBlock() {
                position = rawEnd.position
                rightStrip = rawEnd.strip
            } else {
                let isBlock = kind == UInt8(ascii: "%")
                tokens.append(JinjaToken(kind: isBlock ? .blockBegin : .variableBegin, line: line))
                let close = try lexExpression(closing: isBlock ? "%}" : "}}")
                rightStrip = close.strip
                rightPlus = close.plus
                tokens.append(JinjaToken(kind: isBlock ? .blockEnd : .variableEnd, line: line))
            }
            if rightStrip {
                stripNextLeading = true
            } else if kind != UInt8(ascii: "{") && !rightPlus {
                // trim_blocks: remove the first newline after a block or comment tag.
                if starts("\r\n", at: position) {
                    position += 2
                    line += 1
                } else if position < bytes.count, bytes[position] == 0x0a || bytes[position] == 0x0d {
                    position += 1
                    if bytes[position - 1] == 0x0a { line += 1 }
                }
            }
            textIsLineStart = position > 0 && position <= bytes.count && (bytes[position - 1] == 0x0a || bytes[position - 1] == 0x0d)
            if position >= bytes.count { return }
        }
    }

    /// `{% raw %}…{% endraw %}`: emits the body as text; nil when the tag is not `raw`.
    private mutating func lexRawBlock() throws -> (position: Int, strip: Bool)? {
        var i = position
        while i < bytes.count, Self.isSpace(bytes[i]) { i += 1 }
        guard starts("raw", at: i) else { return nil }
        i += 3
        while i < bytes.count, Self.isSpace(bytes[i]) { i += 1 }
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard starts("%}", at: i) else { return nil }
        let bodyStart = i + 2
        var j = bodyStart
        while j < bytes.count {
            if starts("{%", at: j) {
                var k = j + 2
                if k < bytes.count, bytes[k] == UInt8(ascii: "-") || bytes[k] == UInt8(ascii: "+") { k += 1 }
                while k < bytes.count, Self.isSpace(bytes[k]) { k += 1 }
                if starts("endraw", at: k) {
                    var m = k + 6
                    while m < bytes.count, Self.isSpace(bytes[m]) { m += 1 }
                    var strip = false
                    if m < bytes.count, bytes[m] == UInt8(ascii: "-") {
                        strip = true
                        m += 1
                    }
                    guard starts("%}", at: m) else { throw error("expected '%}' after endraw") }
                    var body = Array(bytes[bodyStart..<j])
                    if bytes[j + 2] == UInt8(ascii: "-") { while let l = body.last, Self.isSpace(l) { body.removeLast() } }
                    tokens.append(JinjaToken(kind: .text(String(decoding: body, as: UTF8.self)), line: line))
                    line += bytes[position..<(m + 2)].reduce(0) { $0 + ($1 == 0x0a ? 1 : 0) }
                    return (m + 2, strip)
                }
            }
            j += 1
        }
        throw error("Missing end of raw directive")
    }

    /// Tokenizes the inside of `{{ }}` / `{% %}` up to the closing delimiter (outside brackets).
    private mutating func lexExpression(closing: String) throws -> (strip: Bool, plus: Bool) {
        var depth: [UInt8] = []
        while true {
            while position < bytes.count, Self.isSpace(bytes[position]) {
                if bytes[position] == 0x0a { line += 1 }
                position += 1
            }
            guard position < bytes.count else {
                throw error("unexpected end of template, expected '\(closing == "}}" ? "end of print statement" : "end of statement block")'")
            }
            if depth.isEmpty {
                if starts(closing, at: position) {
                    position += 2
                    return (false, false)
                }
                if starts("-" + closing, at: position) {
                    position += 3
                    return (true, false)
                }
                if closing == "%}", starts("+%}", at: position) {
                    position += 3
                    return (false, true)
                }
            }
            let c = bytes[position]
            if c == UInt8(ascii: "_") || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) {
                let start = position
                while position < bytes.count,
                    bytes[position] == UInt8(ascii: "_") || (bytes[position] >= 0x30 && bytes[position] <= 0x39)
                        || (bytes[position] >= 0x41 && bytes[position] <= 0x5a) || (bytes[position] >= 0x61 && bytes[position] <= 0x7a)
                {
                    position += 1
                }
                tokens.append(JinjaToken(kind: .name(String(decoding: bytes[start..<position], as: UTF8.self)), line: line))
            } else if c >= 0x30 && c <= 0x39 {
                tokens.append(JinjaToken(kind: try lexNumber(), line: line))
            } else if c == UInt8(ascii: "'") || c == UInt8(ascii: "\"") {
                tokens.append(JinjaToken(kind: .string(try lexString(quote: c)), line: line))
            } else {
                let three = ["**", "//", "==", "!=", "<=", ">="]
                if let op = three.first(where: { starts($0, at: position) }) {
                    position += 2
                    tokens.append(JinjaToken(kind: .op(op), line: line))
                    continue
                }
                let single = "+-*/%~<>=.,:|()[]{}!"
                guard single.utf8.contains(c) else { throw error("unexpected char \(String(UnicodeScalar(c)).debugDescription)") }
                if c == UInt8(ascii: "(") || c == UInt8(ascii: "[") || c == UInt8(ascii: "{") { depth.append(c) }
                if c == UInt8(ascii: ")") || c == UInt8(ascii: "]") || c == UInt8(ascii: "}") {
                    let expected: UInt8 = c == UInt8(ascii: ")") ? UInt8(ascii: "(") : c == UInt8(ascii: "]") ? UInt8(ascii: "[") : UInt8(ascii: "{")
                    guard depth.last == expected else { throw error("unexpected '\(String(UnicodeScalar(c)))'") }
                    depth.removeLast()
                }
                position += 1
                tokens.append(JinjaToken(kind: .op(String(UnicodeScalar(c))), line: line))
            }
        }
    }

    private mutating func lexNumber() throws -> JinjaToken.Kind {
        let start = position
        func digits() {
            while position < bytes.count, (bytes[position] >= 0x30 && bytes[position] <= 0x39) || bytes[position] == UInt8(ascii: "_") { position += 1 }
        }
        digits()
        var isFloat = false
        if position + 1 < bytes.count, bytes[position] == UInt8(ascii: "."), bytes[position + 1] >= 0x30, bytes[position + 1] <= 0x39 {
            isFloat = true
            position += 1
            digits()
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
            var p = position + 1
            if p < bytes.count, bytes[p] == UInt8(ascii: "+") || bytes[p] == UInt8(ascii: "-") { p += 1 }
            if p < bytes.count, bytes[p] >= 0x30, bytes[p] <= 0x39 {
                isFloat = true
                position = p
                digits()
            }
        }
        let text = String(decoding: bytes[start..<position], as: UTF8.self).replacingOccurrences(of: "_", with: "")
        if isFloat, let d = Double(text) { return .float(d) }
        guard let i = Int(text) else { throw error("integer literal too large: \(text)") }
        return .integer(i)
    }

    private mutating func lexString(quote: UInt8) throws -> String {
        position += 1
        var scalars = String.UnicodeScalarView()
        var run: [UInt8] = []
        func flush() {
            scalars.append(contentsOf: String(decoding: run, as: UTF8.self).unicodeScalars)
            run.removeAll()
        }
        while true {
            guard position < bytes.count else { throw error("unexpected char \"\(String(UnicodeScalar(quote)))\" (unterminated string)") }
            let c = bytes[position]
            position += 1
            if c == quote {
                flush()
                return String(scalars)
            }
            if c == 0x0a { line += 1 }
            if c != UInt8(ascii: "\\") {
                run.append(c)
                continue
            }
            guard position < bytes.count else { continue }
            let e = bytes[position]
            position += 1
            func hex(_ count: Int) -> Unicode.Scalar? {
                guard position + count <= bytes.count,
                    let v = UInt32(String(decoding: bytes[position..<position + count], as: UTF8.self), radix: 16)
                else { return nil }
                position += count
                return Unicode.Scalar(v)
            }
            // Python string-literal escapes (jinja2 decodes them the same way).
            switch e {
            case UInt8(ascii: "n"): run.append(0x0a)
            case UInt8(ascii: "t"): run.append(0x09)
            case UInt8(ascii: "r"): run.append(0x0d)
            case UInt8(ascii: "\\"): run.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "'"): run.append(UInt8(ascii: "'"))
            case UInt8(ascii: "\""): run.append(UInt8(ascii: "\""))
            case UInt8(ascii: "0"): run.append(0)
            case UInt8(ascii: "a"): run.append(0x07)
            case UInt8(ascii: "b"): run.append(0x08)
            case UInt8(ascii: "f"): run.append(0x0c)
            case UInt8(ascii: "v"): run.append(0x0b)
            case 0x0a: line += 1
            case UInt8(ascii: "x"), UInt8(ascii: "u"), UInt8(ascii: "U"):
                let count = e == UInt8(ascii: "x") ? 2 : e == UInt8(ascii: "u") ? 4 : 8
                flush()
                guard let s = hex(count) else { throw error("invalid \\\(String(UnicodeScalar(e))) escape in string") }
                scalars.append(s)
            default:
                run.append(UInt8(ascii: "\\"))
                run.append(e)
            }
        }
    }
}
