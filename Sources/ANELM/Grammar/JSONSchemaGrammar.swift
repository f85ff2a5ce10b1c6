import Foundation

extension Grammar {
    /// A grammar whose matches are JSON texts valid against `jsonSchema` (see `JSONSchemaCompiler` for what
    /// is supported). A keyword that is not supported is an error naming it.
    public init(jsonSchema: Data) throws {
        try self.init(jsonSchema: try JSONValue.parse(jsonSchema, source: "JSON schema"))
    }

    /// The same from a schema already parsed (e.g. out of a request body). Properties are generated in the
    /// object's member order.
    public init(jsonSchema: JSONValue) throws {
        try self.init(gbnf: try JSONSchemaCompiler.gbnf(schema: jsonSchema))
    }

    /// Any JSON object (`response_format: {"type": "json_object"}`).
    public static let jsonObject: Grammar = {
        do {
            return try Grammar(gbnf: "root ::= object\n" + JSONSchemaCompiler.genericRules)
        } catch {
            preconditionFailure("the built-in JSON grammar does not compile: \(error)")
        }
    }()
}

/// JSON schema → GBNF.
///
/// Output policy: no whitespace before the value or after it; between tokens at most one space, or a
/// newline and up to 16 spaces (so small models cannot loop on whitespace). Objects list their
/// `properties` in schema order. What is generated is always a subset of what the schema allows:
/// - objects with `properties` and no `additionalProperties` take no other keys (as `false`);
///   `true` or a schema allows extra keys after the declared ones (keys without escapes);
///   `{"type": "object"}` alone is any object;
/// - integers without bounds have at most 16 digits; bounds are exact (digit by digit) within ±10^15;
/// - numbers have no exponent, at most 16 integer and 15 fraction digits; bounds are met by tightening
///   them to the integers inside (a fraction only where it cannot cross a bound);
/// - `pattern` is a regular expression of literals, classes, `.`, `\d\w\s` (and negations), groups,
///   alternation and quantifiers; without `^`/`$` any text may come before/after; `.` and negated classes
///   never produce control characters;
/// - `format`: date, time, date-time (RFC 3339, days up to 31 in every month), uuid;
/// - `oneOf` is generated as `anyOf` (the branches should not overlap).
struct JSONSchemaCompiler {
    private let root: JSONValue
    private var rules: [(name: String, body: String)] = []
    private var ruleNames: Set<String> = []
    private var refRules: [String: String] = [:]
    private var usesGeneric = false

    static func gbnf(schema: JSONValue) throws -> String {
        var compiler = JSONSchemaCompiler(root: schema)
        let top = try compiler.expression(schema, name: "root", path: "#")
        var text = "root ::= \(top)\n"
        for rule in compiler.rules { text += "\(rule.name) ::= \(rule.body)\n" }
        if compiler.usesGeneric { text += genericRules }
        return text
    }

    /// One schema as a piece of a larger grammar (tool calls): its top expression and its rules, every rule
    /// name starting with `prefix` so that several schemas can share a grammar; `genericRules` must be added
    /// once when `usesGeneric`.
    static func embedded(schema: JSONValue, prefix: String) throws -> (expression: String, rules: String, usesGeneric: Bool) {
        var compiler = JSONSchemaCompiler(root: schema)
        compiler.prefix = prefix
        let top = try compiler.expression(schema, name: "root", path: "#")
        return (top, compiler.rules.map { "\($0.name) ::= \($0.body)\n" }.joined(), compiler.usesGeneric)
    }

    /// Put before every rule name (see `embedded`).
    private var prefix = ""

    private init(root: JSONValue) { self.root = root }

    /// Any JSON value, and the pieces typed schemas share.
    static let genericRules = """
        value ::= object | array | string | number | "true" | "false" | "null"
        object ::= "{" ws ( string ws ":" ws value ( ws "," ws string ws ":" ws value )* ws )? "}"
        array ::= "[" ws ( value ( ws "," ws value )* ws )? "]"
        string ::= "\\"" char* "\\""
        char ::= [^"\\\\\\x00-\\x1F] | "\\\\" ( ["\\\\/bfnrt] | "u" ( [0-9a-cA-CefEF] hex hex hex | [dD] [0-7] hex hex ) )
        hex ::= [0-9a-fA-F]
        number ::= "-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,15} )?
        integer ::= "-"? ( "0" | [1-9] [0-9]{0,15} )
        ws ::= ( " " | "\\n" " "{0,16} )?

        """

    private static let annotations: Set<String> = ["title", "description", "examples", "default", "$schema", "$id", "$comment", "$defs", "definitions"]
    private static let supported: Set<String> = [
        "type", "properties", "required", "additionalProperties", "enum", "const", "items", "minItems", "maxItems",
        "anyOf", "oneOf", "pattern", "minLength", "maxLength", "format", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "$ref",
    ]

    /// A GBNF expression (usually a rule name) for `schema`.
    private mutating func expression(_ schema: JSONValue, name: String, path: String) throws -> String {
        switch schema {
        case .bool(true):
            usesGeneric = true
            return "value"
        case .bool(false): throw ANELMError("JSON schema \(path): the schema false allows nothing")
        case .object(let members):
            for key in members.keys where !Self.supported.contains(key) && !Self.annotations.contains(key) {
                throw ANELMError("JSON schema \(path): unsupported keyword '\(key)'")
            }
        default: throw ANELMError("JSON schema \(path): a schema must be an object or a boolean")
        }
        let keys = Set(Self.constrainingKeys(schema))
        if let ref = schema["$ref"] {
            guard keys == ["$ref"] else {
                throw ANELMError(
                    "JSON schema \(path): '$ref' next to \(keys.subtracting(["$ref"]).sorted().map { "'\($0)'" }.joined(separator: ", ")) is not supported")
            }
            guard case .string(let target) = ref else { throw ANELMError("JSON schema \(path): '$ref' must be a string") }
            return try reference(target, path: path)
        }
        for keyword in ["const", "enum"] {
            guard let value = schema[keyword] else { continue }
            guard keys.subtracting(["type"]) == [keyword] else {
                throw ANELMError("JSON schema \(path): '\(keyword)' next to constraints other than 'type' is not supported")
            }
            var values = [value]
            if keyword == "enum" {
                guard case .array(let list) = value else { throw ANELMError("JSON schema \(path): 'enum' must be an array") }
                values = list
            }
            // With a 'type' too, only the values of that type.
            let types = try typeList(schema, path: path)
            values = values.filter { value in types?.contains { Self.isInstance(value, of: $0) } ?? true }
            guard !values.isEmpty else { throw ANELMError("JSON schema \(path): no '\(keyword)' value is of the schema's type") }
            // Compact JSON equal to the schema's value (numbers as JSONValue writes them: 1e2 as 100.0).
            return try define(name, "( " + values.map { Self.literal($0.text) }.joined(separator: " | ") + " )")
        }
        for keyword in ["anyOf", "oneOf"] {
            guard let options = schema[keyword] else { continue }
            guard keys == [keyword] else { throw ANELMError("JSON schema \(path): '\(keyword)' next to other constraints is not supported") }
            guard case .array(let branches) = options, !branches.isEmpty else {
                throw ANELMError("JSON schema \(path): '\(keyword)' must be a non-empty array")
            }
            var parts: [String] = []
            for (i, branch) in branches.enumerated() {
                parts.append(try expression(branch, name: "\(name)-\(i)", path: "\(path)/\(keyword)/\(i)"))
            }
            return try define(name, "( " + parts.joined(separator: " | ") + " )")
        }
        var types: [String]
        switch try typeList(schema, path: path) {
        case nil:
            if schema["properties"] != nil || schema["additionalProperties"] != nil {
                types = ["object"]
            } else if schema["items"] != nil || schema["minItems"] != nil || schema["maxItems"] != nil {
                types = ["array"]
            } else if schema["pattern"] != nil || schema["format"] != nil || schema["minLength"] != nil || schema["maxLength"] != nil {
                types = ["string"]
            } else if schema["minimum"] != nil || schema["maximum"] != nil || schema["exclusiveMinimum"] != nil || schema["exclusiveMaximum"] != nil {
                types = ["number"]
            } else {
                usesGeneric = true
                return "value"
            }
        case let list?: types = list
        }
        var parts: [String] = []
        for type in types {
            parts.append(try typed(type, schema, name: types.count == 1 ? name : "\(name)-\(type)", path: path))
        }
        return parts.count == 1 ? parts[0] : try define(name, "( " + parts.joined(separator: " | ") + " )")
    }

    /// Whether `value` is an instance of the JSON schema type `type` (a whole double such as 2.0 is an integer).
    private static func isInstance(_ value: JSONValue, of type: String) -> Bool {
        switch (value, type) {
        case (.null, "null"), (.bool, "boolean"), (.int, "number"), (.double, "number"), (.string, "string"), (.array, "array"),
            (.object, "object"), (.int, "integer"):
            return true
        case (.double(let d), "integer"): return d == d.rounded()
        default: return false
        }
    }

    /// The schema's `type` as a list (nil when absent).
    private func typeList(_ schema: JSONValue, path: String) throws -> [String]? {
        switch schema["type"] {
        case nil: return nil
        case .string(let type)?: return [type]
        case .array(let list)?:
            let types = try list.map { item -> String in
                guard case .string(let type) = item else { throw ANELMError("JSON schema \(path): 'type' entries must be strings") }
                return type
            }
            guard !types.isEmpty else { throw ANELMError("JSON schema \(path): 'type' is empty") }
            return types
        default: throw ANELMError("JSON schema \(path): 'type' must be a string or an array of strings")
        }
    }

    private static func constrainingKeys(_ schema: JSONValue) -> [String] {
        guard case .object(let members) = schema else { return [] }
        return members.keys.filter { !annotations.contains($0) }
    }

    private mutating func typed(_ type: String, _ schema: JSONValue, name: String, path: String) throws -> String {
        usesGeneric = true  // ws, string, char, … are shared
        switch type {
        case "null": return "\"null\""
        case "boolean": return "( \"true\" | \"false\" )"
        case "string": return try string(schema, name: name, path: path)
        case "integer":
            let (low, high) = try integerBounds(schema, path: path)
            return try define(name, try Self.integerRange(low, high, path: path))
        case "number": return try number(schema, name: name, path: path)
        case "array": return try array(schema, name: name, path: path)
        case "object": return try object(schema, name: name, path: path)
        default: throw ANELMError("JSON schema \(path): unknown type '\(type)'")
        }
    }

    // MARK: - References

    private mutating func reference(_ target: String, path: String) throws -> String {
        if let rule = refRules[target] { return rule }
        guard target == "#" || target.hasPrefix("#/") else {
            throw ANELMError("JSON schema \(path): only local references ('#/…') are supported, not '\(target)'")
        }
        var node = root
        for raw in target.dropFirst(2).split(separator: "/", omittingEmptySubsequences: false) where target != "#" {
            let key = raw.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            switch node {
            case .object(let members):
                guard let next = members[key] else { throw ANELMError("JSON schema \(path): '$ref' \(target) points nowhere") }
                node = next
            case .array(let items):
                guard let i = Int(key), items.indices.contains(i) else { throw ANELMError("JSON schema \(path): '$ref' \(target) points nowhere") }
                node = items[i]
            default: throw ANELMError("JSON schema \(path): '$ref' \(target) points nowhere")
            }
        }
        let rule = uniqueName("ref-" + Self.sanitize(target == "#" ? "root" : String(target.split(separator: "/").last ?? "x")))
        refRules[target] = rule
        ruleNames.insert(rule)
        // Reserved before compiling the target, so recursive schemas refer back to it.
        let index = rules.count
        rules.append((rule, ""))
        let body = try expression(node, name: rule + "-body", path: target)
        rules[index].body = body
        return rule
    }

    // MARK: - Strings

    private mutating func string(_ schema: JSONValue, name: String, path: String) throws -> String {
        let minLength = try nonNegativeInt(schema, "minLength", path: path) ?? 0
        let maxLength = try nonNegativeInt(schema, "maxLength", path: path)
        if let maxLength, maxLength < minLength { throw ANELMError("JSON schema \(path): maxLength is below minLength") }
        if let format = schema["format"] {
            guard case .string(let format) = format else { throw ANELMError("JSON schema \(path): 'format' must be a string") }
            guard schema["pattern"] == nil, schema["minLength"] == nil, schema["maxLength"] == nil else {
                throw ANELMError("JSON schema \(path): 'format' together with 'pattern' or lengths is not supported")
            }
            let date = "[0-9] [0-9] [0-9] [0-9] \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] )"
            let hour = "( [01] [0-9] | \"2\" [0-3] )"
            let minute = "[0-5] [0-9]"
            let time = "\(hour) \":\" \(minute) \":\" \(minute) ( \".\" [0-9]{1,6} )? ( \"Z\" | [+-] \(hour) \":\" \(minute) )"
            let body: String
            switch format {
            case "date": body = date
            case "time": body = time
            case "date-time": body = "\(date) \"T\" \(time)"
            case "uuid": body = "hex{8} \"-\" hex{4} \"-\" hex{4} \"-\" hex{4} \"-\" hex{12}"
            default: throw ANELMError("JSON schema \(path): unsupported format '\(format)' (supported: date, time, date-time, uuid)")
            }
            return try define(name, "\"\\\"\" \(body) \"\\\"\"")
        }
        if let pattern = schema["pattern"] {
            guard case .string(let pattern) = pattern else { throw ANELMError("JSON schema \(path): 'pattern' must be a string") }
            guard schema["minLength"] == nil, schema["maxLength"] == nil else {
                throw ANELMError("JSON schema \(path): 'pattern' together with minLength/maxLength is not supported")
            }
            let body = try RegexToGBNF.translate(pattern, path: path)
            return try define(name, "\"\\\"\" \(body) \"\\\"\"")
        }
        if minLength == 0 && maxLength == nil { return "string" }
        let count = maxLength.map { "{\(minLength),\($0)}" } ?? "{\(minLength),}"
        return try define(name, "\"\\\"\" char\(count) \"\\\"\"")
    }

    // MARK: - Numbers

    private func bound(_ schema: JSONValue, _ key: String, path: String) throws -> Double? {
        guard let value = schema[key] else { return nil }
        guard let number = value.numberValue else { throw ANELMError("JSON schema \(path): '\(key)' must be a number") }
        guard abs(number) <= 1e15 else { throw ANELMError("JSON schema \(path): '\(key)' beyond ±10^15 is not supported") }
        return number
    }

    /// Inclusive integer bounds implied by minimum/maximum/exclusive….
    private func integerBounds(_ schema: JSONValue, path: String) throws -> (Int?, Int?) {
        var low: Int? = try bound(schema, "minimum", path: path).map { Int($0.rounded(.up)) }
        var high: Int? = try bound(schema, "maximum", path: path).map { Int($0.rounded(.down)) }
        if let e = try bound(schema, "exclusiveMinimum", path: path) { low = max(low ?? .min, Int(e.rounded(.down)) + 1) }
        if let e = try bound(schema, "exclusiveMaximum", path: path) { high = min(high ?? .max, Int(e.rounded(.up)) - 1) }
        if let low, let high, low > high { throw ANELMError("JSON schema \(path): no integer lies within the bounds") }
        return (low, high)
    }

    private mutating func number(_ schema: JSONValue, name: String, path: String) throws -> String {
        let (low, high) = try integerBounds(schema, path: path)
        if low == nil && high == nil { return "number" }
        let fraction = "\".\" [0-9]{1,15}"
        var parts = [try Self.integerRange(low, high, path: path)]
        // n.fff ≥ 0 lies in [n, n+1): fine up to high - 1. -n.fff lies in (-n-1, -n]: fine from low + 1.
        let positiveHigh = high.map { $0 - 1 }
        let positiveLow = max(low ?? 0, 0)
        if positiveHigh.map({ $0 >= positiveLow }) ?? true {
            parts.append("( \(try Self.integerRange(positiveLow, positiveHigh, path: path)) ) \(fraction)")
        }
        let negativeLow = low.map { $0 + 1 }
        let negativeHigh = min(high ?? -1, -1)
        if negativeLow.map({ $0 <= negativeHigh }) ?? true {
            parts.append("( \(try Self.integerRange(negativeLow, negativeHigh, path: path)) ) \(fraction)")
        }
        // -0.fff lies in (-1, 0).
        if low.map({ $0 <= -1 }) ?? true, high.map({ $0 >= 0 }) ?? true { parts.append("\"-0\" \(fraction)") }
        return try define(name, parts.map { "( \($0) )" }.joined(separator: " | "))
    }

    /// Integers in [low, high] (nil: unbounded, at most 16 digits), digit by digit.
    static func integerRange(_ low: Int?, _ high: Int?, path: String) throws -> String {
        var parts: [String] = []
        // Negative numbers: "-" and a magnitude in [-min(high, -1), -low].
        if low.map({ $0 < 0 }) ?? true {
            let magnitudeLow = -min(high ?? -1, -1)
            let magnitudeHigh = low.map { -$0 }
            if magnitudeHigh.map({ $0 >= magnitudeLow }) ?? true, let range = positiveRange(magnitudeLow, magnitudeHigh) {
                parts.append("\"-\" ( \(range) )")
            }
        }
        if high.map({ $0 >= 0 }) ?? true {
            let from = max(low ?? 0, 0)
            if from == 0 {
                parts.append("\"0\"")
                if high.map({ $0 >= 1 }) ?? true, let range = positiveRange(1, high) { parts.append(range) }
            } else if let range = positiveRange(from, high) {
                parts.append(range)
            }
        }
        guard !parts.isEmpty else { throw ANELMError("JSON schema \(path): no integer lies within the bounds") }
        return parts.map { "( \($0) )" }.joined(separator: " | ")
    }

    /// Integers in [low ≥ 1, high] without leading zeros.
    private static func positiveRange(_ low: Int, _ high: Int?) -> String? {
        if let high, high < low { return nil }
        let lowDigits = String(low).count
        var parts: [String] = []
        let top = high ?? (lowDigits >= 16 ? power10(lowDigits) - 1 : power10(16) - 1)
        for length in lowDigits...String(top).count {
            let from = max(low, power10(length - 1))
            let to = min(top, power10(length) - 1)
            if from <= to { parts.append(sameLength(Array(String(from)).map { Int(String($0)) ?? 0 }, Array(String(to)).map { Int(String($0)) ?? 0 })) }
        }
        return parts.map { "( \($0) )" }.joined(separator: " | ")
    }

    private static func power10(_ n: Int) -> Int { (0..<n).reduce(1) { r, _ in r * 10 } }

    private static func digitClass(_ a: Int, _ b: Int) -> String { a == b ? "\"\(a)\"" : "[\(a)-\(b)]" }

    /// Numbers of one length between the digit strings `low` and `high`.
    private static func sameLength(_ low: [Int], _ high: [Int]) -> String {
        if low.count == 1 { return digitClass(low[0], high[0]) }
        let restLow = Array(low.dropFirst())
        let restHigh = Array(high.dropFirst())
        let anyRest = "[0-9]{\(restLow.count)}"
        if low[0] == high[0] { return "\"\(low[0])\" ( \(sameLength(restLow, restHigh)) )" }
        if restLow.allSatisfy({ $0 == 0 }) && restHigh.allSatisfy({ $0 == 9 }) { return "\(digitClass(low[0], high[0])) \(anyRest)" }
        var parts: [String] = []
        parts.append("\"\(low[0])\" ( \(sameLength(restLow, [Int](repeating: 9, count: restLow.count))) )")
        if high[0] - low[0] > 1 { parts.append("\(digitClass(low[0] + 1, high[0] - 1)) \(anyRest)") }
        parts.append("\"\(high[0])\" ( \(sameLength([Int](repeating: 0, count: restHigh.count), restHigh)) )")
        return parts.map { "( \($0) )" }.joined(separator: " | ")
    }

    // MARK: - Arrays and objects

    private func nonNegativeInt(_ schema: JSONValue, _ key: String, path: String) throws -> Int? {
        guard let value = schema[key] else { return nil }
        // 3 and 3.0 alike.
        guard let number = value.integerValue, (0...10_000).contains(number) else {
            throw ANELMError("JSON schema \(path): '\(key)' must be an integer in 0…10000")
        }
        return number
    }

    private mutating func array(_ schema: JSONValue, name: String, path: String) throws -> String {
        let minItems = try nonNegativeInt(schema, "minItems", path: path) ?? 0
        let maxItems = try nonNegativeInt(schema, "maxItems", path: path)
        if let maxItems, maxItems < minItems { throw ANELMError("JSON schema \(path): maxItems is below minItems") }
        var item = "value"
        if let items = schema["items"] { item = try expression(items, name: name + "-item", path: path + "/items") } else { usesGeneric = true }
        if maxItems == 0 { return "\"[\" ws \"]\"" }
        let more = "( ws \",\" ws \(item) )" + (maxItems.map { "{\(max(minItems - 1, 0)),\($0 - 1)}" } ?? "{\(max(minItems - 1, 0)),}")
        let filled = "\"[\" ws \(item) \(more) ws \"]\""
        return try define(name, minItems == 0 ? "\"[\" ws \"]\" | \(filled)" : filled)
    }

    private mutating func object(_ schema: JSONValue, name: String, path: String) throws -> String {
        var properties = JSONObject()
        if let value = schema["properties"] {
            guard case .object(let members) = value else { throw ANELMError("JSON schema \(path): 'properties' must be an object") }
            properties = members
        }
        var required: Set<String> = []
        if let value = schema["required"] {
            guard case .array(let names) = value else { throw ANELMError("JSON schema \(path): 'required' must be an array") }
            for item in names {
                guard case .string(let key) = item else { throw ANELMError("JSON schema \(path): 'required' entries must be strings") }
                guard properties[key] != nil else {
                    throw ANELMError("JSON schema \(path): required property '\(key)' is not in 'properties' (not supported)")
                }
                required.insert(key)
            }
        }
        // Extra keys: none with properties and no additionalProperties (or false); any value with true; else its schema.
        var extraValue: String?
        switch schema["additionalProperties"] {
        case nil: if properties.isEmpty { return "object" }
        case .bool(false)?: break
        case .bool(true)?: extraValue = "value"
        case let other?: extraValue = try expression(other, name: name + "-extra", path: path + "/additionalProperties")
        }
        var extra: String? = nil
        if let extraValue {
            let key = try keyNotIn(properties.keys, name: name + "-key")
            extra = try define(name + "-extra-pair", "\"\\\"\" \(key) \"\\\"\" ws \":\" ws \(extraValue)")
        }
        var pairs: [(rule: String, required: Bool)] = []
        // In the schema document's order (JSONObject keeps it).
        for (i, (key, schema)) in properties.enumerated() {
            let value = try expression(schema, name: "\(name)-\(Self.sanitize(key))", path: "\(path)/properties/\(key)")
            let pair = try define("\(name)-p\(i)", "\(Self.literal(JSONValue.string(key).text)) ws \":\" ws \(value)")
            pairs.append((pair, required.contains(key)))
        }
        // first_i: members from i on with none written yet; rest_i: the same after at least one (each behind a comma).
        var first = extra.map { "( \($0) ( ws \",\" ws \($0) )* )?" } ?? ""
        var rest = extra.map { "( ws \",\" ws \($0) )*" } ?? ""
        for (i, pair) in pairs.enumerated().reversed() {
            let restName = try define("\(name)-rest\(i)", rest.isEmpty ? "\"\"" : rest)
            let newRest = "ws \",\" ws \(pair.rule) \(restName)"
            let newFirst = "\(pair.rule) \(restName)"
            if pair.required {
                first = newFirst
                rest = newRest
            } else {
                let firstName = try define("\(name)-first\(i)", first.isEmpty ? "\"\"" : first)
                first = "( \(newFirst) | \(firstName) )"
                rest = "( \(newRest) | \(restName) )"
            }
        }
        let body = first.isEmpty ? "\"{\" ws \"}\"" : "\"{\" ws \(first) ws \"}\""
        return try define(name, body)
    }

    /// Object keys (unescaped characters only) that are none of `names`.
    private mutating func keyNotIn(_ names: [String], name: String) throws -> String {
        let words = names.map { Array($0.unicodeScalars) }.filter { !$0.contains { $0 == "\"" || $0 == "\\" || $0.value < 0x20 } }
        return try keyNotIn(words, prefix: [], name: name)
    }

    /// A trie over the names' characters; at each node: stop (unless the prefix is a name), a next character
    /// of some name, or any other character and then anything.
    private mutating func keyNotIn(_ words: [[Unicode.Scalar]], prefix: [Unicode.Scalar], name: String) throws -> String {
        let keyChar = "[^\"\\\\\\x00-\\x1F]"
        let continuing = words.filter { $0.count > prefix.count && Array($0.prefix(prefix.count)) == prefix }
        let children = Array(Set(continuing.map { $0[prefix.count] })).sorted { $0.value < $1.value }
        var parts: [String] = []
        if !words.contains(prefix) { parts.append("\"\"") }
        for (i, child) in children.enumerated() {
            let rest = try keyNotIn(words, prefix: prefix + [child], name: "\(name)-\(i)")
            parts.append("\(Self.literal(String(Character(child)))) \(rest)")
        }
        let others = children.map { Self.classCharacter($0.value) }.joined()
        parts.append("[^\"\\\\\\x00-\\x1F\(others)] \(keyChar)*")
        return try define(name, parts.joined(separator: " | "))
    }

    // MARK: - Text

    private mutating func define(_ name: String, _ body: String) throws -> String {
        let rule = uniqueName(Self.sanitize(name))
        ruleNames.insert(rule)
        rules.append((rule, body))
        return rule
    }

    private func uniqueName(_ name: String) -> String {
        let base = prefix + name
        let reserved: Set<String> = ["root", "value", "object", "array", "string", "char", "hex", "number", "integer", "ws"]
        var candidate = base
        var n = 1
        while ruleNames.contains(candidate) || reserved.contains(candidate) {
            candidate = "\(base)-\(n)"
            n += 1
        }
        return candidate
    }

    static func sanitize(_ text: String) -> String {
        let cleaned = String(text.unicodeScalars.map { isASCIIAlphanumeric($0) ? Character($0) : "-" })
        return cleaned.isEmpty ? "x" : cleaned
    }

    /// A GBNF string literal for `text`.
    static func literal(_ text: String) -> String {
        "\""
            + text.unicodeScalars.map { scalar -> String in
                switch scalar {
                case "\"": return "\\\""
                case "\\": return "\\\\"
                default: return scalar.value < 0x20 || scalar.value == 0x7F ? escape(scalar.value) : String(Character(scalar))
                }
            }.joined() + "\""
    }

    /// One character inside a GBNF class.
    static func classCharacter(_ value: UInt32) -> String {
        if let scalar = Unicode.Scalar(value), isASCIIAlphanumeric(scalar) {
            return String(Character(scalar))
        }
        return escape(value)
    }

    static func escape(_ value: UInt32) -> String {
        if value <= 0xFF { return String(format: "\\x%02X", value) }
        if value <= 0xFFFF { return String(format: "\\u%04X", value) }
        return String(format: "\\U%08X", value)
    }
}

func isASCIIAlphanumeric(_ c: Unicode.Scalar) -> Bool {
    (c.value >= 0x30 && c.value <= 0x39) || (c.value >= 0x41 && c.value <= 0x5A) || (c.value >= 0x61 && c.value <= 0x7A)
}
