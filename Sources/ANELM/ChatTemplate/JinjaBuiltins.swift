import Foundation

/// jinja2's filters, tests and the Python str/dict/list methods chat templates call.
extension JinjaInterpreter {
    static let knownFilters: Set<String> = [
        "abs", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "int",
        "indent", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
        "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson",
        "trim", "unique", "upper", "wordcount",
    ]
    static let knownTests: Set<String> = [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "float", "ge", "gt",
        "greaterthan", "in", "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "none", "number",
        "odd", "sameas", "sequence", "string", "true", "undefined", "upper", "==", "!=", "<", ">", "<=", ">=",
    ]

    private func string(_ value: JinjaValue, _ what: String) throws -> String {
        if case .string(let s) = value { return s }
        if case .undefined(let name) = value { throw fail("'\(name)' is undefined") }
        throw fail("\(what) expects a string, got '\(value.typeName)'")
    }

    func applyFilter(
        _ name: String, _ value: JinjaValue, _ positional: [JinjaValue], _ keywords: [(String, JinjaValue)],
        scope: JinjaScope
    ) throws -> JinjaValue {
        let a = FilterArguments(name: name, value: value, positional: positional, keywords: keywords)
        switch name {
        case "trim":
            let chars = a.arg(0, "chars").flatMap { if case .string(let c) = $0 { return c } else { return nil } }
            return .string(pythonStrip(value.printed, chars, leading: true, trailing: true))
        case "upper": return .string(value.printed.uppercased())
        case "lower": return .string(value.printed.lowercased())
        case "capitalize": return .string(pythonCapitalize(value.printed))
        case "title": return .string(jinjaTitle(value.printed))
        case "length", "count": return try filterLength(a)
        case "first":
            return try iterate(value).first ?? .undefined("first")
        case "last":
            return try iterate(value).last ?? .undefined("last")
        case "join": return try filterJoin(a)
        case "replace": return try filterReplace(a)
        case "default", "d": return try filterDefaultValue(a)
        case "tojson": return try filterToJSON(a)
        case "string", "safe", "e", "escape": return try filterStringOrEscape(a)
        case "int": return try filterToInt(a)
        case "float": return try filterToFloat(a)
        case "list": return .array(try iterate(value))
        case "items": return try filterItems(a)
        case "dictsort": return try filterDictsort(a)
        case "indent": return try filterIndent(a)
        case "unique": return try filterUnique(a)
        case "round": return try filterRound(a)
        case "abs": return try filterAbsolute(a)
        case "sort": return try filterSort(a)
        case "reverse": return try filterReverse(a)
        case "sum": return try filterSum(a)
        case "max", "min": return try filterExtreme(a)
        case "wordcount":
            return .int(value.printed.split(whereSeparator: { $0.isWhitespace }).count)
        case "center": return try filterCenter(a)
        case "map": return try filterMap(a, scope: scope)
        case "select", "reject": return try filterSelect(a)
        case "selectattr", "rejectattr": return try filterSelectAttribute(a)
        default:
            throw fail("No filter named '\(name)'.")
        }
    }

    /// `length`, `count`.
    private func filterLength(_ a: FilterArguments) throws -> JinjaValue {
        switch a.value {
        case .string(let s): return .int(s.unicodeScalars.count)
        case .array(let a), .tuple(let a): return .int(a.count)
        case .object(let o): return .int(o.count)
        case .undefined: return .int(0)
        case .namespace(let ns): return .int(ns.attributes.count)
        default: throw fail("object of type '\(a.value.typeName)' has no len()")
        }
    }

    /// `join`.
    private func filterJoin(_ a: FilterArguments) throws -> JinjaValue {
        let separator = a.arg(0, "d")?.printed ?? ""
        var items = try iterate(a.value)
        if let attribute = a.arg(1, "attribute") { items = try items.map { try attributeOrItem($0, attribute) } }
        return .string(items.map(\.printed).joined(separator: separator))
    }

    /// `replace`.
    private func filterReplace(_ a: FilterArguments) throws -> JinjaValue {
        guard let old = a.arg(0, "old"), let new = a.arg(1, "new") else { throw fail("replace needs old and new") }
        let count = a.arg(2, "count")?.intValue
        return .string(pythonReplace(a.value.printed, old.printed, new.printed, count: count))
    }

    /// `default`, `d`.
    private func filterDefaultValue(_ a: FilterArguments) throws -> JinjaValue {
        let fallback = a.arg(0, "default_value") ?? .string("")
        let boolean = a.arg(1, "boolean")?.isTruthy ?? false
        if a.value.isUndefined || (boolean && !a.value.isTruthy) { return fallback }
        return a.value
    }

    /// `tojson`.
    private func filterToJSON(_ a: FilterArguments) throws -> JinjaValue {
        let indent = a.arg(0, "indent").flatMap { $0.intValue }.map { min(max($0, 0), 1000) }
        let sortKeys = a.keywords.first { $0.0 == "sort_keys" }?.1.isTruthy ?? false
        let ensureASCII = a.keywords.first { $0.0 == "ensure_ascii" }?.1.isTruthy ?? false
        var itemSeparator: String? = nil
        var keySeparator: String? = nil
        if let separators = a.keywords.first(where: { $0.0 == "separators" })?.1, case .none = separators {
        } else if let separators = a.keywords.first(where: { $0.0 == "separators" })?.1 {
            let parts = try iterate(separators)
            guard parts.count == 2 else { throw fail("tojson separators must be a pair") }
            itemSeparator = parts[0].printed
            keySeparator = parts[1].printed
        }
        do {
            return .string(
                try a.value.toJSON(
                    indent: indent, sortKeys: sortKeys, itemSeparator: itemSeparator,
                    keySeparator: keySeparator, ensureASCII: ensureASCII))
        } catch let error as ANELMError {
            throw fail(error.message)
        }
    }

    /// `string`, `safe`, `e`, `escape`.
    private func filterStringOrEscape(_ a: FilterArguments) throws -> JinjaValue {
        if a.name == "string" || a.name == "safe" { return a.value.isUndefined ? .string("") : (a.name == "safe" ? a.value : .string(a.value.printed)) }
        return .string(
            a.value.printed.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&#34;").replacingOccurrences(of: "'", with: "&#39;"))
    }

    /// `int`.
    private func filterToInt(_ a: FilterArguments) throws -> JinjaValue {
        let fallback = a.arg(0, "default") ?? .int(0)
        switch a.value {
        case .int, .bool: return .int(a.value.intValue ?? 0)
        case .double(let d): return d.isFinite && abs(d) < 9e18 ? .int(Int(d)) : fallback
        case .string(let s):
            let t = s.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "_", with: "")
            if let i = Int(t) { return .int(i) }
            if let d = Double(t), d.isFinite, abs(d) < 9e18 { return .int(Int(d)) }
            return fallback
        default: return fallback
        }
    }

    /// `float`.
    private func filterToFloat(_ a: FilterArguments) throws -> JinjaValue {
        let fallback = a.arg(0, "default") ?? .double(0)
        switch a.value {
        case .int, .bool, .double: return .double(a.value.numericValue ?? 0)
        case .string(let s): return Double(s.trimmingCharacters(in: .whitespaces)).map { .double($0) } ?? fallback
        default: return fallback
        }
    }

    /// `items`.
    private func filterItems(_ a: FilterArguments) throws -> JinjaValue {
        switch a.value {
        case .object(let o): return .array(o.pairs.map { .tuple([.string($0.0), $0.1]) })
        case .undefined: return .array([])
        default: throw fail("items filter expects a mapping, got '\(a.value.typeName)'")
        }
    }

    /// `dictsort`.
    private func filterDictsort(_ a: FilterArguments) throws -> JinjaValue {
        guard case .object(let o) = a.value else { throw fail("dictsort expects a mapping, got '\(a.value.typeName)'") }
        let caseSensitive = a.arg(0, "case_sensitive")?.isTruthy ?? false
        let byValue = a.arg(1, "by")?.printed == "value"
        let reverse = a.arg(2, "reverse")?.isTruthy ?? false
        var pairs = o.pairs.map { JinjaValue.tuple([.string($0.0), $0.1]) }
        pairs = try stableSort(pairs, reverse: reverse) { item in
            guard case .tuple(let kv) = item else { return item }
            let key = byValue ? kv[1] : kv[0]
            if !caseSensitive, case .string(let s) = key { return .string(s.lowercased()) }
            return key
        }
        return .array(pairs)
    }

    /// `indent`.
    private func filterIndent(_ a: FilterArguments) throws -> JinjaValue {
        let widthValue = a.arg(0, "width") ?? .int(4)
        let prefix: String
        if case .string(let s) = widthValue { prefix = s } else { prefix = String(repeating: " ", count: min(max(0, widthValue.intValue ?? 4), 1000)) }
        let first = a.arg(1, "first")?.isTruthy ?? false
        let blank = a.arg(2, "blank")?.isTruthy ?? false
        let text = a.value.printed
        var lines = text.components(separatedBy: "\n")
        for i in lines.indices where (i > 0 || first) && (blank || !lines[i].allSatisfy({ $0 == " " || $0 == "\t" }) || lines[i].isEmpty && blank) {
            if lines[i].isEmpty && !blank { continue }
            lines[i] = prefix + lines[i]
        }
        return .string(lines.joined(separator: "\n"))
    }

    /// `unique`.
    private func filterUnique(_ a: FilterArguments) throws -> JinjaValue {
        var seen: [JinjaValue] = []
        for item in try iterate(a.value) {
            let key: JinjaValue = {
                if case .string(let s) = item { return .string(s.lowercased()) }
                return item
            }()
            if !seen.contains(where: { existing in
                let k2: JinjaValue = {
                    if case .string(let s) = existing { return .string(s.lowercased()) }
                    return existing
                }()
                return k2.pythonEquals(key)
            }) {
                seen.append(item)
            }
        }
        return .array(seen)
    }

    /// `round`.
    private func filterRound(_ a: FilterArguments) throws -> JinjaValue {
        guard let number = a.value.numericValue else { throw fail("round expects a number, got '\(a.value.typeName)'") }
        let precision = min(max(a.arg(0, "precision")?.intValue ?? 0, -300), 30)
        let method = a.arg(1, "method")?.printed ?? "common"
        let scale = pow(10.0, Double(precision))
        let rule: FloatingPointRoundingRule
        switch method {
        case "common": rule = .toNearestOrEven
        case "ceil": rule = .up
        case "floor": rule = .down
        default: throw fail("method must be common, ceil or floor")
        }
        if rule == .toNearestOrEven {
            // Python's round() rounds the exact decimal a.value; formatting gives that correctly.
            let text = String(format: "%.\(max(0, precision))f", number)
            if precision >= 0, let d = Double(text) {
                let scaled = number * scale
                if abs(scaled - scaled.rounded(.towardZero)) == 0.5 { return .double((scaled.rounded(.toNearestOrEven)) / scale) }
                return .double(d)
            }
        }
        return .double((number * scale).rounded(rule) / scale)
    }

    /// `abs`.
    private func filterAbsolute(_ a: FilterArguments) throws -> JinjaValue {
        switch a.value {
        case .int(let i):
            guard i != Int.min else { throw fail("integer overflow in abs") }
            return .int(abs(i))
        case .bool(let b): return .int(b ? 1 : 0)
        case .double(let d): return .double(abs(d))
        default: throw fail("bad operand type for abs(): '\(a.value.typeName)'")
        }
    }

    /// `sort`.
    private func filterSort(_ a: FilterArguments) throws -> JinjaValue {
        let reverse = a.arg(0, "reverse")?.isTruthy ?? false
        let caseSensitive = a.arg(1, "case_sensitive")?.isTruthy ?? false
        let attribute = a.arg(2, "attribute")
        return .array(
            try stableSort(try iterate(a.value), reverse: reverse) { item in
                let key = try attribute.map { try attributeOrItem(item, $0) } ?? item
                if !caseSensitive, case .string(let s) = key { return .string(s.lowercased()) }
                return key
            })
    }

    /// `reverse`.
    private func filterReverse(_ a: FilterArguments) throws -> JinjaValue {
        if case .string(let s) = a.value {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: s.unicodeScalars.reversed())
            return .string(String(view))
        }
        return .array(try iterate(a.value).reversed())
    }

    /// `sum`.
    private func filterSum(_ a: FilterArguments) throws -> JinjaValue {
        var total: JinjaValue = a.arg(1, "start") ?? .int(0)
        let attribute = a.arg(0, "attribute")
        for item in try iterate(a.value) { total = try binary("+", total, try attribute.map { try attributeOrItem(item, $0) } ?? item) }
        return total
    }

    /// `max`, `min`.
    private func filterExtreme(_ a: FilterArguments) throws -> JinjaValue {
        let items = try iterate(a.value)
        guard var best = items.first else { return .undefined(a.name) }
        for item in items.dropFirst() where try compare(a.name == "max" ? ">" : "<", item, best) { best = item }
        return best
    }

    /// `center`.
    private func filterCenter(_ a: FilterArguments) throws -> JinjaValue {
        let width = min(a.arg(0, "width")?.intValue ?? 80, 1_000_000)
        let text = a.value.printed
        let total = max(0, width - text.unicodeScalars.count)
        let left = total / 2 + (total % 2 == 1 && width % 2 == 1 ? 1 : 0)
        return .string(String(repeating: " ", count: left) + text + String(repeating: " ", count: total - left))
    }

    /// `map`.
    private func filterMap(_ a: FilterArguments, scope: JinjaScope) throws -> JinjaValue {
        let items = try iterate(a.value)
        if let attribute = a.keywords.first(where: { $0.0 == "attribute" })?.1 {
            let fallback = a.keywords.first { $0.0 == "default" }?.1
            return .array(
                try items.map { item in
                    let v = try attributeOrItem(item, attribute)
                    if v.isUndefined, let fallback { return fallback }
                    return v
                })
        }
        guard let filterName = a.positional.first?.printed else { throw fail("map requires a filter name or attribute") }
        guard Self.knownFilters.contains(filterName) else { throw fail("No filter named '\(filterName)'.") }
        let rest = Array(a.positional.dropFirst())
        return .array(try items.map { try applyFilter(filterName, $0, rest, a.keywords, scope: scope) })
    }

    /// `select`, `reject`.
    private func filterSelect(_ a: FilterArguments) throws -> JinjaValue {
        let keep = a.name == "select"
        return .array(
            try iterate(a.value).filter { item in
                let passes: Bool
                if let testName = a.positional.first?.printed {
                    guard Self.knownTests.contains(testName) else { throw fail("No test named '\(testName)'.") }
                    passes = try applyTest(testName, item, Array(a.positional.dropFirst()))
                } else {
                    passes = item.isTruthy
                }
                return passes == keep
            })
    }

    /// `selectattr`, `rejectattr`.
    private func filterSelectAttribute(_ a: FilterArguments) throws -> JinjaValue {
        let keep = a.name == "selectattr"
        guard let attribute = a.positional.first else { throw fail("\(a.name) requires an attribute name") }
        return .array(
            try iterate(a.value).filter { item in
                let v = try attributeOrItem(item, attribute)
                let passes: Bool
                if a.positional.count > 1 {
                    let testName = a.positional[1].printed
                    guard Self.knownTests.contains(testName) else { throw fail("No test named '\(testName)'.") }
                    passes = try applyTest(testName, v, Array(a.positional.dropFirst(2)))
                } else {
                    passes = v.isTruthy
                }
                return passes == keep
            })
    }

    /// jinja2's `environment.getattr`/`getitem` for filter `attribute=` arguments (dotted paths allowed).
    private func attributeOrItem(_ value: JinjaValue, _ attribute: JinjaValue) throws -> JinjaValue {
        if let i = attribute.intValue { return try item(of: value, .int(i)) }
        var current = value
        for part in attribute.printed.split(separator: ".", omittingEmptySubsequences: false) {
            if let i = Int(part) {
                current = try item(of: current, .int(i))
                continue
            }
            if current.isUndefined { return current }
            current = try item(of: current, .string(String(part)))
        }
        return current
    }

    private func stableSort(_ items: [JinjaValue], reverse: Bool, key: (JinjaValue) throws -> JinjaValue) throws -> [JinjaValue] {
        let keyed = try items.enumerated().map { ($0.offset, try key($0.element), $0.element) }
        var failure: Error? = nil
        let sorted = keyed.sorted { a, b in
            do {
                if try compare("<", a.1, b.1) { return !reverse }
                if try compare("<", b.1, a.1) { return reverse }
            } catch { failure = error }
            return a.0 < b.0
        }
        if let failure { throw failure }
        return sorted.map(\.2)
    }

    func applyTest(_ name: String, _ value: JinjaValue, _ args: [JinjaValue]) throws -> Bool {
        func needArg() throws -> JinjaValue {
            guard let a = args.first else { throw fail("test '\(name)' needs an argument") }
            return a
        }
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none":
            if case .none = value { return true }
            return false
        case "string":
            if case .string = value { return true }
            return false
        case "number":
            switch value {
            case .int, .double, .bool: return true
            default: return false
            }
        case "integer":
            if case .int = value { return true }
            return false
        case "float":
            if case .double = value { return true }
            return false
        case "boolean":
            if case .bool = value { return true }
            return false
        case "true":
            if case .bool(true) = value { return true }
            return false
        case "false":
            if case .bool(false) = value { return true }
            return false
        case "mapping":
            switch value {
            case .object: return true
            default: return false
            }
        case "iterable":
            switch value {
            case .array, .tuple, .object, .string, .namespace: return true
            default: return false
            }
        case "sequence":
            switch value {
            case .array, .tuple, .object, .string: return true
            default: return false
            }
        case "callable":
            if case .function = value { return true }
            return false
        case "odd", "even":
            guard let i = value.intValue else { throw fail("test '\(name)' expects an integer") }
            return (i % 2 != 0) == (name == "odd")
        case "divisibleby":
            guard let i = value.intValue, let d = try needArg().intValue, d != 0 else { throw fail("divisibleby expects non-zero integers") }
            return i.remainderReportingOverflow(dividingBy: d).partialValue == 0
        case "eq", "equalto", "==": return value.pythonEquals(try needArg())
        case "ne", "!=": return !value.pythonEquals(try needArg())
        case "lt", "lessthan", "<": return try compare("<", value, try needArg())
        case "le", "<=": return try compare("<=", value, try needArg())
        case "gt", "greaterthan", ">": return try compare(">", value, try needArg())
        case "ge", ">=": return try compare(">=", value, try needArg())
        case "in": return try contains(try needArg(), value)
        case "sameas":
            let other = try needArg()
            switch (value, other) {
            case (.none, .none): return true
            case (.bool(let a), .bool(let b)): return a == b
            default: return false
            }
        case "lower":
            if case .string(let s) = value { return s == s.lowercased() }
            return false
        case "upper":
            if case .string(let s) = value { return s == s.uppercased() }
            return false
        case "escaped": return false
        default: throw fail("No test named '\(name)'.")
        }
    }

    /// Python methods on str, dict and list; nil when `name` is not one we know for that type.
    func callMethod(_ object: JinjaValue, _ name: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue? {
        func arg(_ i: Int) -> JinjaValue? { i < args.count ? args[i] : nil }
        func optString(_ i: Int) throws -> String? {
            guard let a = arg(i) else { return nil }
            if case .none = a { return nil }
            return try string(a, name)
        }
        switch object {
        case .string(let s):
            switch name {
            case "strip": return .string(pythonStrip(s, try optString(0), leading: true, trailing: true))
            case "lstrip": return .string(pythonStrip(s, try optString(0), leading: true, trailing: false))
            case "rstrip": return .string(pythonStrip(s, try optString(0), leading: false, trailing: true))
            case "upper": return .string(s.uppercased())
            case "lower": return .string(s.lowercased())
            case "title": return .string(pythonTitle(s))
            case "capitalize": return .string(pythonCapitalize(s))
            case "split", "rsplit":
                let maxSplit = (arg(1) ?? kwargs.first { $0.0 == "maxsplit" }?.1)?.intValue ?? -1
                let separator =
                    try optString(0)
                    ?? kwargs.first(where: { $0.0 == "sep" }).flatMap {
                        if case .string(let v) = $0.1 { return v }
                        return nil
                    }
                if let separator, separator.isEmpty { throw fail("empty separator") }
                return .array(pythonSplit(s, separator, maxSplit: maxSplit, fromRight: name == "rsplit").map { .string($0) })
            case "splitlines":
                var lines = s.components(separatedBy: "\n")
                if lines.last == "" { lines.removeLast() }
                return .array(lines.map { .string($0.hasSuffix("\r") ? String($0.dropLast()) : $0) })
            case "startswith", "endswith":
                guard let prefixArg = arg(0) else { throw fail("\(name) needs an argument") }
                let candidates: [JinjaValue]
                if case .tuple(let t) = prefixArg { candidates = t } else { candidates = [prefixArg] }
                for candidate in candidates {
                    let c = try string(candidate, name)
                    if name == "startswith"
                        ? s.unicodeScalars.starts(with: c.unicodeScalars)
                        : s.unicodeScalars.reversed().starts(with: c.unicodeScalars.reversed())
                    {
                        return .bool(true)
                    }
                }
                return .bool(false)
            case "replace":
                guard let old = try optString(0), let new = try optString(1) else { throw fail("replace needs two strings") }
                return .string(pythonReplace(s, old, new, count: arg(2)?.intValue))
            case "find", "index", "rfind":
                guard let needle = try optString(0) else { throw fail("\(name) needs an argument") }
                let hay = Array(s.unicodeScalars)
                let nd = Array(needle.unicodeScalars)
                var found = -1
                if nd.count <= hay.count {
                    let range = Array(0...(hay.count - nd.count))
                    for i in (name == "rfind" ? range.reversed() : range) where Array(hay[i..<(i + nd.count)]) == nd {
                        found = i
                        break
                    }
                }
                if name == "index" && found < 0 { throw fail("substring not found") }
                return .int(found)
            case "count":
                guard let needle = try optString(0) else { throw fail("count needs an argument") }
                return .int(needle.isEmpty ? s.unicodeScalars.count + 1 : s.components(separatedBy: needle).count - 1)
            case "join":
                guard let items = arg(0) else { throw fail("join needs an argument") }
                return .string(try iterate(items).map { try string($0, "join") }.joined(separator: s))
            case "format":
                return .string(try pythonFormat(s, args, kwargs))
            case "isalpha": return .bool(!s.isEmpty && s.allSatisfy { $0.isLetter })
            case "isdigit", "isnumeric", "isdecimal": return .bool(!s.isEmpty && s.allSatisfy { $0.isNumber })
            case "isalnum": return .bool(!s.isEmpty && s.allSatisfy { $0.isLetter || $0.isNumber })
            case "isspace": return .bool(!s.isEmpty && s.allSatisfy { $0.isWhitespace })
            case "islower": return .bool(s.contains { $0.isLetter } && s == s.lowercased())
            case "isupper": return .bool(s.contains { $0.isLetter } && s == s.uppercased())
            default: return nil
            }
        case .object(let o):
            switch name {
            case "items": return .array(o.pairs.map { .tuple([.string($0.0), $0.1]) })
            case "keys": return .array(o.keys.map { .string($0) })
            case "values": return .array(o.pairs.map { $0.1 })
            case "get":
                guard let key = arg(0) else { throw fail("get needs a key") }
                guard case .string(let k) = key else { return arg(1) ?? JinjaValue.none }
                return o[k] ?? arg(1) ?? JinjaValue.none
            default: return nil
            }
        case .undefined(let undefinedName):
            throw fail("'\(undefinedName)' is undefined")
        default:
            return nil
        }
    }
}

// MARK: Python string helpers

func pythonStrip(_ s: String, _ chars: String?, leading: Bool, trailing: Bool) -> String {
    let set: (Unicode.Scalar) -> Bool
    if let chars {
        let allowed = Set(chars.unicodeScalars)
        set = { allowed.contains($0) }
    } else {
        set = { $0.properties.isWhitespace || (0x1c...0x1f).contains($0.value) }
    }
    var scalars = Array(s.unicodeScalars)
    if trailing { while let l = scalars.last, set(l) { scalars.removeLast() } }
    if leading {
        var start = 0
        while start < scalars.count, set(scalars[start]) { start += 1 }
        scalars.removeFirst(start)
    }
    var view = String.UnicodeScalarView()
    view.append(contentsOf: scalars)
    return String(view)
}

func pythonCapitalize(_ s: String) -> String {
    guard let first = s.first else { return s }
    return String(first).uppercased() + s.dropFirst().lowercased()
}

/// Python `str.title()`: a letter after a non-letter starts a word.
func pythonTitle(_ s: String) -> String {
    var out = ""
    var previousIsLetter = false
    for c in s {
        out += previousIsLetter ? String(c).lowercased() : String(c).uppercased()
        previousIsLetter = c.isLetter
    }
    return out
}

/// jinja2's `title` filter: words start after whitespace or one of `-({[<`.
func jinjaTitle(_ s: String) -> String {
    var out = ""
    var atWordStart = true
    for c in s {
        let isSeparator = c.isWhitespace || "-({[<".contains(c)
        if isSeparator {
            out.append(c)
            atWordStart = true
            continue
        }
        out += atWordStart ? String(c).uppercased() : String(c).lowercased()
        atWordStart = false
    }
    return out
}

func pythonReplace(_ s: String, _ old: String, _ new: String, count: Int?) -> String {
    guard let count, count >= 0 else {
        if old.isEmpty { return new + s.map { String($0) + new }.joined() }
        return s.replacingOccurrences(of: old, with: new)
    }
    var result = ""
    var rest = Substring(s)
    var done = 0
    while done < count, !old.isEmpty, let r = rest.range(of: old) {
        result += rest[..<r.lowerBound] + new
        rest = rest[r.upperBound...]
        done += 1
    }
    return result + rest
}

func pythonSplit(_ s: String, _ separator: String?, maxSplit: Int, fromRight: Bool) -> [String] {
    if let separator {
        var parts = s.components(separatedBy: separator)
        if maxSplit >= 0 && parts.count > maxSplit + 1 {
            if fromRight {
                let head = parts[0..<(parts.count - maxSplit)].joined(separator: separator)
                parts = [head] + parts[(parts.count - maxSplit)...]
            } else {
                let tail = parts[maxSplit...].joined(separator: separator)
                parts = Array(parts[..<maxSplit]) + [tail]
            }
        }
        return parts
    }
    // Whitespace split: runs of whitespace separate, no empty strings.
    var words: [String] = []
    var current = ""
    var remainderStart: String.Index? = nil
    var index = s.startIndex
    while index < s.endIndex {
        let c = s[index]
        if c.isWhitespace {
            if !current.isEmpty {
                words.append(current)
                current = ""
                if maxSplit >= 0 && words.count == maxSplit && !fromRight {
                    var j = index
                    while j < s.endIndex, s[j].isWhitespace { j = s.index(after: j) }
                    remainderStart = j
                    break
                }
            }
        } else {
            current.append(c)
        }
        index = s.index(after: index)
    }
    if let remainderStart {
        if remainderStart < s.endIndex { words.append(String(s[remainderStart...]).trimmingCharacters(in: .whitespacesAndNewlines)) }
    } else if !current.isEmpty {
        words.append(current)
    }
    return words
}

/// Python `str.format` for `{}`, `{0}` and `{name}` fields (no format specs).
private func pythonFormat(_ format: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> String {
    var out = ""
    var autoIndex = 0
    var chars = Array(format)[...]
    while let c = chars.first {
        chars = chars.dropFirst()
        if c == "{" {
            if chars.first == "{" {
                out.append("{")
                chars = chars.dropFirst()
                continue
            }
            guard let close = chars.firstIndex(of: "}") else { throw ANELMError("Single '{' encountered in format string") }
            let field = String(chars[chars.startIndex..<close])
            chars = chars[(close + 1)...]
            let value: JinjaValue?
            if field.isEmpty {
                value = autoIndex < args.count ? args[autoIndex] : nil
                autoIndex += 1
            } else if let i = Int(field) {
                value = i < args.count ? args[i] : nil
            } else {
                value = kwargs.first { $0.0 == field }?.1
            }
            guard let value else { throw ANELMError("format field '\(field)' has no value") }
            out += value.printed
        } else if c == "}" {
            if chars.first == "}" { chars = chars.dropFirst() }
            out.append("}")
        } else {
            out.append(c)
        }
    }
    return out
}

/// A filter call: the filter's name, the value it filters, and its arguments.
struct FilterArguments {
    let name: String
    let value: JinjaValue
    let positional: [JinjaValue]
    let keywords: [(String, JinjaValue)]

    /// The argument at position `index`, else the keyword argument `keyword`.
    func arg(_ index: Int, _ keyword: String) -> JinjaValue? {
        if index < positional.count { return positional[index] }
        return keywords.first { $0.0 == keyword }?.1
    }
}
