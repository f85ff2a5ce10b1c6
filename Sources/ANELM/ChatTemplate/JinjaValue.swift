import Foundation

/// A value inside a chat template, with Python/jinja2 semantics for truthiness, printing and equality.
public indirect enum JinjaValue {
    /// jinja2's default `Undefined`: prints empty, is falsy, and raises on attribute access.
    case undefined(String)
    /// Python `None`.
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    /// A Python list.
    case array([JinjaValue])
    /// A Python tuple (printed with parentheses), e.g. from `dict.items()`.
    case tuple([JinjaValue])
    /// A Python dict with string keys.
    case object(JinjaObject)
    /// A mutable `namespace()`; shared by reference like in Python.
    case namespace(JinjaNamespace)
    case function(JinjaFunction)
}

/// A dictionary that keeps insertion order, as Python dicts do.
public struct JinjaObject {
    /// The keys in insertion order.
    public private(set) var keys: [String] = []
    private var storage: [String: JinjaValue] = [:]

    /// An empty dictionary.
    public init() {}

    /// A dictionary from ordered pairs (a repeated key keeps its first position and last value).
    public init(_ pairs: [(String, JinjaValue)]) {
        for (key, value) in pairs { self[key] = value }
    }

    /// The value for `key`; setting nil removes it.
    public subscript(key: String) -> JinjaValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    /// The entries in insertion order.
    public var pairs: [(String, JinjaValue)] { keys.compactMap { key in storage[key].map { (key, $0) } } }
    /// The number of entries.
    public var count: Int { keys.count }
}

/// The attributes of a jinja2 `namespace()` object.
public final class JinjaNamespace {
    var attributes: JinjaObject
    init(_ attributes: JinjaObject) { self.attributes = attributes }
}

/// A callable value: a global like `raise_exception`, a macro, or `loop.cycle`.
public final class JinjaFunction {
    let name: String
    let body: (_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue
    init(_ name: String, _ body: @escaping (_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue) {
        self.name = name
        self.body = body
    }
}

extension JinjaValue {
    /// Python truthiness.
    var isTruthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .array(let a), .tuple(let a): return !a.isEmpty
        case .object(let o): return o.count > 0
        case .namespace, .function: return true
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }

    /// `str(value)` as Python prints it inside `{{ }}`.
    var printed: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python `repr(value)`, used for values inside printed lists and dicts.
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return pythonFloatRepr(d)
        case .string(let s): return pythonStringRepr(s)
        case .array(let a): return "[" + a.map(\.repr).joined(separator: ", ") + "]"
        case .tuple(let a): return a.count == 1 ? "(" + a[0].repr + ",)" : "(" + a.map(\.repr).joined(separator: ", ") + ")"
        case .object(let o): return "{" + o.pairs.map { pythonStringRepr($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case .namespace(let ns):
            return "<Namespace " + ns.attributes.pairs.map { pythonStringRepr($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + ">"
        case .function(let f): return "<function \(f.name)>"
        }
    }

    /// A short Python type name for error messages.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .tuple: return "tuple"
        case .object: return "dict"
        case .namespace: return "Namespace"
        case .function: return "function"
        }
    }

    /// Python `==` (numbers compare across int/float/bool; containers deeply).
    func pythonEquals(_ other: JinjaValue) -> Bool {
        switch (self, other) {
        case (.undefined, .undefined), (.none, .none): return true
        // Python compares code points; Swift `==` would treat canonically equivalent strings as equal.
        case (.string(let a), .string(let b)): return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case (.array(let a), .array(let b)), (.tuple(let a), .tuple(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.pythonEquals($1) }
        case (.object(let a), .object(let b)):
            return a.count == b.count && a.pairs.allSatisfy { key, value in b[key].map { value.pythonEquals($0) } ?? false }
        case (.namespace(let a), .namespace(let b)): return a === b
        case (.function(let a), .function(let b)): return a === b
        default:
            if let x = numericValue, let y = other.numericValue { return x == y }
            return false
        }
    }

    /// The number a bool/int/float stands for in arithmetic and comparisons.
    var numericValue: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    var intValue: Int? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return i
        default: return nil
        }
    }
}

extension JinjaValue: Equatable {
    public static func == (lhs: JinjaValue, rhs: JinjaValue) -> Bool { lhs.pythonEquals(rhs) }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form outside 1e-4 ..< 1e16.
func pythonFloatRepr(_ value: Double) -> String {
    if value.isNaN { return "nan" }
    if value.isInfinite { return value < 0 ? "-inf" : "inf" }
    if value == 0 { return value.sign == .minus ? "-0.0" : "0.0" }
    // Swift's description already gives the shortest round-trip digits; re-layout them as Python does.
    var text = "\(value.magnitude)"
    var exponent = 0
    if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
        exponent = Int(text[text.index(after: e)...]) ?? 0
        text = String(text[..<e])
    }
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    let intPart = String(parts[0])
    let fracPart = parts.count > 1 ? String(parts[1]) : ""
    var digits = intPart + fracPart
    var pointPosition = intPart.count + exponent  // digits[0..<pointPosition] before the point
    while digits.hasPrefix("0") && digits.count > 1 {
        digits.removeFirst()
        pointPosition -= 1
    }
    while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
    let decimalExponent = pointPosition - 1
    let sign = value < 0 ? "-" : ""
    if decimalExponent < -4 || decimalExponent >= 16 {
        var mantissa = String(digits.prefix(1))
        if digits.count > 1 { mantissa += "." + digits.dropFirst() }
        let expSign = decimalExponent < 0 ? "-" : "+"
        let expDigits = String(abs(decimalExponent))
        return sign + mantissa + "e" + expSign + (expDigits.count < 2 ? "0" + expDigits : expDigits)
    }
    if pointPosition <= 0 {
        return sign + "0." + String(repeating: "0", count: -pointPosition) + digits
    }
    if pointPosition >= digits.count {
        return sign + digits + String(repeating: "0", count: pointPosition - digits.count) + ".0"
    }
    let index = digits.index(digits.startIndex, offsetBy: pointPosition)
    return sign + digits[..<index] + "." + digits[index...]
}

/// Python's `repr(str)`: single quotes unless the text has a single quote and no double quote.
func pythonStringRepr(_ text: String) -> String {
    let quote: Character = text.contains("'") && !text.contains("\"") ? "\"" : "'"
    var out = String(quote)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if Character(scalar) == quote {
                out += "\\" + String(quote)
            } else if scalar.value < 0x20 || scalar.value == 0x7f {
                out += String(format: "\\x%02x", scalar.value)
            } else if (0x80...0xa0).contains(scalar.value) || scalar.value == 0xad {
                out += String(format: "\\x%02x", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    out.append(quote)
    return out
}
