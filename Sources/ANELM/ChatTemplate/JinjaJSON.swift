import Foundation

extension JinjaValue {
    /// Parses JSON text into a value, keeping object key order (for `tools`, fixtures, extra variables).
    public static func fromJSON(_ text: String) throws -> JinjaValue {
        var parser = OrderedJSONParser(bytes: Array(text.utf8))
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        guard parser.position == parser.bytes.count else { throw ANELMError("invalid JSON: trailing characters at offset \(parser.position)") }
        return value
    }

    /// Python `json.dumps` with transformers' `tojson` options (`ensure_ascii=False` by default).
    func toJSON(indent: Int?, sortKeys: Bool, itemSeparator: String? = nil, keySeparator: String? = nil,
                ensureASCII: Bool = false) throws -> String {
        var out = ""
        let items = itemSeparator ?? (indent == nil ? ", " : ",")
        let keys = keySeparator ?? ": "
        try writeJSON(into: &out, indent: indent, level: 0, sortKeys: sortKeys, itemSeparator: items,
                      keySeparator: keys, ensureASCII: ensureASCII)
        return out
    }

    private func writeJSON(into out: inout String, indent: Int?, level: Int, sortKeys: Bool, itemSeparator: String,
                           keySeparator: String, ensureASCII: Bool) throws {
        guard level < 200 else { throw ANELMError("tojson: value nested too deeply") }
        func newline(_ depth: Int) {
            if let indent { out += "\n" + String(repeating: " ", count: indent * depth) }
        }
        switch self {
        case .none: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN { out += "NaN" } else if d.isInfinite { out += d < 0 ? "-Infinity" : "Infinity" } else { out += pythonFloatRepr(d) }
        case .string(let s): out += jsonQuoted(s, ensureASCII: ensureASCII)
        case .array(let items), .tuple(let items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += itemSeparator }
                newline(level + 1)
                try item.writeJSON(into: &out, indent: indent, level: level + 1, sortKeys: sortKeys,
                                   itemSeparator: itemSeparator, keySeparator: keySeparator, ensureASCII: ensureASCII)
            }
            newline(level)
            out += "]"
        case .object(let object):
            try Self.writeJSONObject(object.pairs, into: &out, indent: indent, level: level, sortKeys: sortKeys,
                                     itemSeparator: itemSeparator, keySeparator: keySeparator, ensureASCII: ensureASCII)
        case .namespace(let ns):
            try Self.writeJSONObject(ns.attributes.pairs, into: &out, indent: indent, level: level, sortKeys: sortKeys,
                                     itemSeparator: itemSeparator, keySeparator: keySeparator, ensureASCII: ensureASCII)
        case .undefined, .function:
            throw ANELMError("Object of type \(typeName) is not JSON serializable")
        }
    }

    private static func writeJSONObject(_ pairs: [(String, JinjaValue)], into out: inout String, indent: Int?, level: Int,
                                        sortKeys: Bool, itemSeparator: String, keySeparator: String, ensureASCII: Bool) throws {
        if pairs.isEmpty { out += "{}"; return }
        let ordered = sortKeys ? pairs.sorted { $0.0.unicodeScalars.lexicographicallyPrecedes($1.0.unicodeScalars) } : pairs
        out += "{"
        for (i, (key, value)) in ordered.enumerated() {
            if i > 0 { out += itemSeparator }
            if let indent { out += "\n" + String(repeating: " ", count: indent * (level + 1)) }
            out += jsonQuoted(key, ensureASCII: ensureASCII) + keySeparator
            try value.writeJSON(into: &out, indent: indent, level: level + 1, sortKeys: sortKeys,
                                itemSeparator: itemSeparator, keySeparator: keySeparator, ensureASCII: ensureASCII)
        }
        if let indent { out += "\n" + String(repeating: " ", count: indent * level) }
        out += "}"
    }
}

/// A JSON string literal as Python's `json.dumps` writes it.
func jsonQuoted(_ text: String, ensureASCII: Bool) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if scalar.value < 0x20 {
                out += String(format: "\\u%04x", scalar.value)
            } else if ensureASCII && scalar.value > 0x7e {
                if scalar.value > 0xffff {
                    let v = scalar.value - 0x10000
                    out += String(format: "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff))
                } else {
                    out += String(format: "\\u%04x", scalar.value)
                }
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

/// A small JSON reader that keeps object key order (Foundation's does not).
private struct OrderedJSONParser {
    let bytes: [UInt8]
    var position = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func skipWhitespace() {
        while position < bytes.count, [0x20, 0x0a, 0x0d, 0x09].contains(bytes[position]) { position += 1 }
    }

    func error(_ message: String) -> ANELMError { ANELMError("invalid JSON at offset \(position): \(message)") }

    mutating func parseValue(depth: Int) throws -> JinjaValue {
        guard depth < 200 else { throw error("nested too deeply") }
        guard position < bytes.count else { throw error("unexpected end") }
        switch bytes[position] {
        case UInt8(ascii: "{"):
            position += 1
            var object = JinjaObject()
            skipWhitespace()
            if position < bytes.count, bytes[position] == UInt8(ascii: "}") { position += 1; return .object(object) }
            while true {
                skipWhitespace()
                guard case .string(let key) = try parseString() else { throw error("expected key") }
                skipWhitespace()
                try expect(":")
                skipWhitespace()
                object[key] = try parseValue(depth: depth + 1)
                skipWhitespace()
                if try endOrComma("}") { return .object(object) }
            }
        case UInt8(ascii: "["):
            position += 1
            var items: [JinjaValue] = []
            skipWhitespace()
            if position < bytes.count, bytes[position] == UInt8(ascii: "]") { position += 1; return .array(items) }
            while true {
                skipWhitespace()
                items.append(try parseValue(depth: depth + 1))
                skipWhitespace()
                if try endOrComma("]") { return .array(items) }
            }
        case UInt8(ascii: "\""):
            return try parseString()
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .none
        default: return try parseNumber()
        }
    }

    mutating func expect(_ char: Character) throws {
        guard position < bytes.count, bytes[position] == char.asciiValue else { throw error("expected '\(char)'") }
        position += 1
    }

    mutating func endOrComma(_ close: Character) throws -> Bool {
        guard position < bytes.count else { throw error("unexpected end") }
        if bytes[position] == close.asciiValue { position += 1; return true }
        try expect(",")
        return false
    }

    mutating func literal(_ word: String) throws {
        let w = Array(word.utf8)
        guard position + w.count <= bytes.count, Array(bytes[position..<position + w.count]) == w else { throw error("bad literal") }
        position += w.count
    }

    mutating func parseNumber() throws -> JinjaValue {
        let start = position
        var isFloat = false
        while position < bytes.count {
            let c = bytes[position]
            if (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") { position += 1 }
            else if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { isFloat = true; position += 1 }
            else { break }
        }
        let text = String(decoding: bytes[start..<position], as: UTF8.self)
        if !isFloat, let i = Int(text) { return .int(i) }
        guard !text.isEmpty, let d = Double(text) else { throw error("bad number '\(text)'") }
        return .double(d)
    }

    mutating func parseHex4() throws -> UInt32 {
        guard position + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[position..<position + 4], as: UTF8.self), radix: 16) else {
            throw error("bad \\u escape")
        }
        position += 4
        return v
    }

    mutating func parseString() throws -> JinjaValue {
        try expect("\"")
        var scalars = String.UnicodeScalarView()
        var run: [UInt8] = []
        func flush() { scalars.append(contentsOf: String(decoding: run, as: UTF8.self).unicodeScalars); run.removeAll() }
        while true {
            guard position < bytes.count else { throw error("unterminated string") }
            let c = bytes[position]
            position += 1
            if c == UInt8(ascii: "\"") { flush(); return .string(String(scalars)) }
            if c != UInt8(ascii: "\\") { run.append(c); continue }
            flush()
            guard position < bytes.count else { throw error("unterminated escape") }
            let e = bytes[position]
            position += 1
            switch e {
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "u"):
                var v = try parseHex4()
                if (0xd800..<0xdc00).contains(v), position + 6 <= bytes.count, bytes[position] == UInt8(ascii: "\\"),
                   bytes[position + 1] == UInt8(ascii: "u") {
                    position += 2
                    let low = try parseHex4()
                    v = 0x10000 + ((v - 0xd800) << 10) + (low &- 0xdc00)
                }
                scalars.append(Unicode.Scalar(v) ?? "\u{FFFD}")
            default: scalars.append(Unicode.Scalar(e))
            }
        }
    }
}
