import Foundation

extension JinjaValue {
    /// Parses JSON text into a value, keeping object key order (for `tools`, fixtures, extra variables).
    public static func fromJSON(_ text: String) throws -> JinjaValue {
        fromJSON(try JSONValue.parse(text, source: "JSON"))
    }

    /// A JSON value as a template value, object members in their order.
    public static func fromJSON(_ value: JSONValue) -> JinjaValue {
        switch value {
        case .null: return .none
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .array(let items): return .array(items.map(fromJSON))
        case .object(let object): return .object(JinjaObject(object.map { ($0.0, fromJSON($0.1)) }))
        }
    }

    /// Python `json.dumps` with transformers' `tojson` options (`ensure_ascii=False` by default).
    func toJSON(
        indent: Int?, sortKeys: Bool, itemSeparator: String? = nil, keySeparator: String? = nil,
        ensureASCII: Bool = false
    ) throws -> String {
        var out = ""
        let items = itemSeparator ?? (indent == nil ? ", " : ",")
        let keys = keySeparator ?? ": "
        try writeJSON(
            into: &out, indent: indent, level: 0, sortKeys: sortKeys, itemSeparator: items,
            keySeparator: keys, ensureASCII: ensureASCII)
        return out
    }

    private func writeJSON(
        into out: inout String, indent: Int?, level: Int, sortKeys: Bool, itemSeparator: String,
        keySeparator: String, ensureASCII: Bool
    ) throws {
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
            if items.isEmpty {
                out += "[]"
                return
            }
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += itemSeparator }
                newline(level + 1)
                try item.writeJSON(
                    into: &out, indent: indent, level: level + 1, sortKeys: sortKeys,
                    itemSeparator: itemSeparator, keySeparator: keySeparator, ensureASCII: ensureASCII)
            }
            newline(level)
            out += "]"
        case .object(let object):
            try Self.writeJSONObject(
                object.pairs, into: &out, indent: indent, level: level, sortKeys: sortKeys,
                itemSeparator: itemSeparator, keySeparator: keySeparator, ensureASCII: ensureASCII)
        case .namespace(let ns):
            try Self.writeJSONObject(
                ns.attributes.pairs, into: &out, indent: indent, level: level, sortKeys: sortKeys,
                itemSeparator: itemSeparator, keySeparator: keySeparator, ensureASCII: ensureASCII)
        case .undefined, .function:
            throw ANELMError("Object of type \(typeName) is not JSON serializable")
        }
    }

    private static func writeJSONObject(
        _ pairs: [(String, JinjaValue)], into out: inout String, indent: Int?, level: Int,
        sortKeys: Bool, itemSeparator: String, keySeparator: String, ensureASCII: Bool
    ) throws {
        if pairs.isEmpty {
            out += "{}"
            return
        }
        let ordered = sortKeys ? pairs.sorted { $0.0.unicodeScalars.lexicographicallyPrecedes($1.0.unicodeScalars) } : pairs
        out += "{"
        for (i, (key, value)) in ordered.enumerated() {
            if i > 0 { out += itemSeparator }
            if let indent { out += "\n" + String(repeating: " ", count: indent * (level + 1)) }
            out += jsonQuoted(key, ensureASCII: ensureASCII) + keySeparator
            try value.writeJSON(
                into: &out, indent: indent, level: level + 1, sortKeys: sortKeys,
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
