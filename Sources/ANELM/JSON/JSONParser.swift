/// The one JSON reader: strict RFC 8259 over UTF-8 bytes. No comments, trailing commas, NaN or single quotes;
/// every escape checked (surrogates in pairs); strings valid UTF-8; numbers finite; nesting at most
/// `maximumDepth`; a key repeated in an object is an error (which value a reader sees would be a guess).
/// Errors name the source, the byte offset and line, and where in the document the parser was.
struct JSONParser {
    static let maximumDepth = 512

    private let bytes: UnsafeBufferPointer<UInt8>
    private let source: String
    private var position = 0
    /// The keys and indices down to the value being read, for errors.
    private var path: [JSONPath.Component] = []

    init(bytes: UnsafeBufferPointer<UInt8>, source: String) {
        self.bytes = bytes
        self.source = source
    }

    mutating func parseDocument() throws -> JSONValue {
        // RFC 8259 §8.1: a byte-order mark may be ignored.
        if bytes.count >= 3, bytes[0] == 0xef, bytes[1] == 0xbb, bytes[2] == 0xbf { position = 3 }
        skipWhitespace()
        guard position < bytes.count else { throw syntaxError(bytes.isEmpty ? "the text is empty" : "no value") }
        let value = try parseValue(depth: 0)
        skipWhitespace()
        guard position == bytes.count else { throw syntaxError("unexpected \(describeByte()) after the value") }
        return value
    }

    // MARK: Errors

    private func syntaxError(_ message: String) -> ANELMError {
        var line = 1
        for i in 0..<min(position, bytes.count) where bytes[i] == 0x0a { line += 1 }
        let place = path.isEmpty ? "" : " in \(JSONPath(source: "", components: path).description)"
        return ANELMError("\(source): invalid JSON at byte \(position) (line \(line))\(place): \(message)")
    }

    private func describeByte() -> String {
        guard position < bytes.count else { return "end of text" }
        let byte = bytes[position]
        if byte >= 0x21 && byte < 0x7f { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x" + String(byte, radix: 16)
    }

    // MARK: Values

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x0a, 0x0d, 0x09: position += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws -> JSONValue {
        guard position < bytes.count else { throw syntaxError("unexpected end of text, expected a value") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return .object(try parseObject(depth: depth + 1))
        case UInt8(ascii: "["): return .array(try parseArray(depth: depth + 1))
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw syntaxError("unexpected \(describeByte()), expected a value")
        }
    }

    private mutating func literal(_ word: StaticString) throws {
        let count = word.utf8CodeUnitCount
        let expected = UnsafeBufferPointer(start: word.utf8Start, count: count)
        guard position + count <= bytes.count, (0..<count).allSatisfy({ bytes[position + $0] == expected[$0] }) else {
            throw syntaxError("unexpected \(describeByte()), expected a value")
        }
        position += count
    }

    private mutating func parseObject(depth: Int) throws -> JSONObject {
        guard depth <= Self.maximumDepth else { throw syntaxError("nested deeper than \(Self.maximumDepth) levels") }
        position += 1
        var object = JSONObject()
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "}") {
            position += 1
            return object
        }
        while true {
            guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
                throw syntaxError("unexpected \(describeByte()), expected a key in quotes")
            }
            let key = try parseString()
            skipWhitespace()
            guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else {
                throw syntaxError("unexpected \(describeByte()), expected ':' after a key")
            }
            position += 1
            skipWhitespace()
            path.append(.key(key))
            let value = try parseValue(depth: depth)
            path.removeLast()
            guard object.appendNew(key, value) else {
                let place = JSONPath(source: source, components: path)
                throw ANELMError("\(place): the key \(quoted(key)) appears twice in one object (JSON readers would disagree on its value)")
            }
            skipWhitespace()
            guard position < bytes.count else { throw syntaxError("unexpected end of text, expected ',' or '}'") }
            switch bytes[position] {
            case UInt8(ascii: ","):
                position += 1
                skipWhitespace()
            case UInt8(ascii: "}"):
                position += 1
                return object
            default:
                throw syntaxError("unexpected \(describeByte()), expected ',' or '}'")
            }
        }
    }

    private mutating func parseArray(depth: Int) throws -> [JSONValue] {
        guard depth <= Self.maximumDepth else { throw syntaxError("nested deeper than \(Self.maximumDepth) levels") }
        position += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if position < bytes.count, bytes[position] == UInt8(ascii: "]") {
            position += 1
            return items
        }
        while true {
            path.append(.index(items.count))
            items.append(try parseValue(depth: depth))
            path.removeLast()
            skipWhitespace()
            guard position < bytes.count else { throw syntaxError("unexpected end of text, expected ',' or ']'") }
            switch bytes[position] {
            case UInt8(ascii: ","):
                position += 1
                skipWhitespace()
            case UInt8(ascii: "]"):
                position += 1
                return items
            default:
                throw syntaxError("unexpected \(describeByte()), expected ',' or ']'")
            }
        }
    }

    // MARK: Numbers

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`: an `.int` when there is no fraction or
    /// exponent and it fits, else a finite `.double`.
    private mutating func parseNumber() throws -> JSONValue {
        let start = position
        func isDigit(_ i: Int) -> Bool { i < bytes.count && bytes[i] >= 0x30 && bytes[i] <= 0x39 }
        let negative = bytes[position] == UInt8(ascii: "-")
        if negative { position += 1 }
        guard isDigit(position) else { throw syntaxError("a number needs a digit after '-'") }
        var magnitude: UInt64 = 0
        var overflow = false
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
            if isDigit(position) { throw syntaxError("a number cannot start with 0 followed by digits") }
        } else {
            while isDigit(position) {
                let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times10.addingReportingOverflow(UInt64(bytes[position] - 0x30))
                magnitude = sum
                overflow = overflow || o1 || o2
                position += 1
            }
        }
        var isInteger = true
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            isInteger = false
            position += 1
            guard isDigit(position) else { throw syntaxError("a number needs digits after '.'") }
            while isDigit(position) { position += 1 }
        }
        if position < bytes.count, bytes[position] | 0x20 == UInt8(ascii: "e") {
            isInteger = false
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") { position += 1 }
            guard isDigit(position) else { throw syntaxError("a number needs digits in its exponent") }
            while isDigit(position) { position += 1 }
        }
        if isInteger && !overflow {
            if !negative, magnitude <= UInt64(Int.max) { return .int(Int(magnitude)) }
            if negative, magnitude <= UInt64(Int.max) + 1 { return .int(magnitude == 0 ? 0 : Int(truncatingIfNeeded: 0 &- magnitude)) }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        guard let value = Double(text), value.isFinite else {
            position = start
            throw syntaxError("the number \(text.prefix(40)) is beyond a double's range")
        }
        return .double(value)
    }

    // MARK: Strings

    /// A string from the opening quote on. Runs without escapes are taken from the bytes as they are.
    private mutating func parseString() throws -> String {
        position += 1
        let start = position
        var sawNonASCII = false
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                let run = UnsafeBufferPointer(rebasing: bytes[start..<position])
                if sawNonASCII { try checkUTF8(run) }
                position += 1
                return String(decoding: run, as: UTF8.self)
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw syntaxError("a control character (0x\(String(byte, radix: 16))) in a string must be escaped") }
            if byte >= 0x80 { sawNonASCII = true }
            position += 1
        }
        guard position < bytes.count else { throw syntaxError("a string is not closed") }
        return try parseEscapedString(from: start)
    }

    /// The slow path, once a string has an escape: bytes collected into a buffer.
    private mutating func parseEscapedString(from start: Int) throws -> String {
        var buffer = Array(bytes[start..<position])
        var sawNonASCII = buffer.contains { $0 >= 0x80 }
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                if sawNonASCII { try buffer.withUnsafeBufferPointer { try checkUTF8($0) } }
                position += 1
                return String(decoding: buffer, as: UTF8.self)
            }
            if byte < 0x20 { throw syntaxError("a control character (0x\(String(byte, radix: 16))) in a string must be escaped") }
            if byte != UInt8(ascii: "\\") {
                if byte >= 0x80 { sawNonASCII = true }
                buffer.append(byte)
                position += 1
                continue
            }
            position += 1
            guard position < bytes.count else { break }
            let escape = bytes[position]
            position += 1
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): buffer.append(escape)
            case UInt8(ascii: "b"): buffer.append(0x08)
            case UInt8(ascii: "f"): buffer.append(0x0c)
            case UInt8(ascii: "n"): buffer.append(0x0a)
            case UInt8(ascii: "r"): buffer.append(0x0d)
            case UInt8(ascii: "t"): buffer.append(0x09)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xdc00..<0xe000).contains(code) {
                    throw syntaxError("\\u\(String(code, radix: 16)) is the second half of a UTF-16 pair without a first")
                }
                if (0xd800..<0xdc00).contains(code) {
                    guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                        throw syntaxError("\\u\(String(code, radix: 16)) is the first half of a UTF-16 pair without a second")
                    }
                    position += 2
                    let low = try hex4()
                    guard (0xdc00..<0xe000).contains(low) else {
                        throw syntaxError("\\u\(String(code, radix: 16)) is followed by \\u\(String(low, radix: 16)), not the second half of a UTF-16 pair")
                    }
                    code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00)
                }
                // Every code here is a scalar: surrogates were paired above.
                if let scalar = Unicode.Scalar(code) { buffer.append(contentsOf: scalar.utf8) }
            default:
                position -= 1
                throw syntaxError("unknown escape \\\(describeByte())")
            }
        }
        throw syntaxError("a string is not closed")
    }

    private mutating func hex4() throws -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard position < bytes.count else { throw syntaxError("a \\u escape needs four hex digits") }
            let byte = bytes[position]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw syntaxError("a \\u escape needs four hex digits")
            }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    /// Rejects bytes that are not well-formed UTF-8 (overlong forms, surrogates, beyond U+10FFFF, cut sequences).
    private func checkUTF8(_ run: UnsafeBufferPointer<UInt8>) throws {
        var i = 0
        while i < run.count {
            let lead = run[i]
            if lead < 0x80 {
                i += 1
                continue
            }
            let length: Int
            var low: UInt8 = 0x80
            var high: UInt8 = 0xbf
            switch lead {
            case 0xc2...0xdf: length = 2
            case 0xe0:
                length = 3
                low = 0xa0
            case 0xe1...0xec, 0xee...0xef: length = 3
            case 0xed:
                length = 3
                high = 0x9f
            case 0xf0:
                length = 4
                low = 0x90
            case 0xf1...0xf3: length = 4
            case 0xf4:
                length = 4
                high = 0x8f
            default: length = 0
            }
            var valid = length > 0 && i + length <= run.count
            if valid {
                valid = run[i + 1] >= low && run[i + 1] <= high
                for k in 2..<max(2, length) where run[i + k] & 0xc0 != 0x80 { valid = false }
            }
            guard valid else { throw syntaxError("a string is not valid UTF-8") }
            i += length
        }
    }
}
