import Foundation

/// A constant in the parsed template (kept Sendable, unlike runtime values).
enum JinjaLiteral: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)

    var value: JinjaValue {
        switch self {
        case .none: return .none
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        }
    }
}

/// An expression node.
indirect enum JinjaExpr: Sendable {
    case literal(JinjaLiteral)
    case name(String)
    case list([JinjaExpr])
    case tuple([JinjaExpr])
    case dict([(JinjaExpr, JinjaExpr)])
    case attribute(JinjaExpr, String)
    case item(JinjaExpr, JinjaExpr)
    case slice(JinjaExpr, JinjaExpr?, JinjaExpr?, JinjaExpr?)
    case call(JinjaExpr, JinjaArguments)
    case filter(JinjaExpr, String, JinjaArguments, line: Int)
    case test(JinjaExpr, String, JinjaArguments, negated: Bool, line: Int)
    case unary(String, JinjaExpr)
    case binary(String, JinjaExpr, JinjaExpr)
    case compare(JinjaExpr, [(String, JinjaExpr)])
    case and(JinjaExpr, JinjaExpr)
    case or(JinjaExpr, JinjaExpr)
    case not(JinjaExpr)
    case conditional(JinjaExpr, then: JinjaExpr, otherwise: JinjaExpr?)
}

/// Positional and keyword arguments of a call, filter or test.
struct JinjaArguments: Sendable {
    var positional: [JinjaExpr] = []
    var keywords: [(String, JinjaExpr)] = []
}

/// What a `set` or `for` assigns to.
enum JinjaTarget: Sendable {
    case name(String)
    case attribute(String, String)
    case tuple([String])
}

/// A statement node.
indirect enum JinjaNode: Sendable {
    case text(String)
    case output(JinjaExpr, line: Int)
    case conditional([(JinjaExpr, [JinjaNode])], otherwise: [JinjaNode], line: Int)
    case loop(JinjaTarget, JinjaExpr, filter: JinjaExpr?, body: [JinjaNode], otherwise: [JinjaNode], line: Int)
    case set(JinjaTarget, JinjaExpr, line: Int)
    case setBlock(JinjaTarget, body: [JinjaNode], line: Int)
    case macro(String, parameters: [(String, JinjaExpr?)], body: [JinjaNode])
    case callBlock(JinjaExpr, parameters: [(String, JinjaExpr?)], body: [JinjaNode], line: Int)
    case filterBlock(String, JinjaArguments, body: [JinjaNode], line: Int)
    case breakLoop(line: Int)
    case continueLoop(line: Int)
}

/// Recursive-descent parser following jinja2's grammar and operator precedence.
struct JinjaParser {
    private let tokens: [JinjaToken]
    private var index = 0
    private var nesting = 0
    private static let maxNesting = 150

    /// Bounds recursion so a hostile template cannot overflow the stack.
    private mutating func enter() throws {
        nesting += 1
        guard nesting <= Self.maxNesting else { throw error("template nested too deeply") }
    }

    static func parse(_ tokens: [JinjaToken]) throws -> [JinjaNode] {
        var parser = JinjaParser(tokens: tokens)
        let (body, endTag) = try parser.parseBody(until: [])
        if let endTag { throw parser.error("Encountered unknown tag '\(endTag)'.") }
        return body
    }

    private init(tokens: [JinjaToken]) { self.tokens = tokens }

    private var current: JinjaToken { index < tokens.count ? tokens[index] : JinjaToken(kind: .end, line: tokens.last?.line ?? 1) }
    private var line: Int { current.line }

    private func error(_ message: String) -> ANELMError { ANELMError("chat template syntax error at line \(line): \(message)") }

    private mutating func advance() { index += 1 }

    private func isOp(_ op: String) -> Bool { if case .op(op) = current.kind { return true } else { return false } }
    private func isName(_ name: String) -> Bool { if case .name(name) = current.kind { return true } else { return false } }

    private mutating func expectOp(_ op: String) throws {
        guard isOp(op) else { throw error("expected '\(op)', got \(describe(current.kind))") }
        advance()
    }

    private mutating func expectName() throws -> String {
        guard case .name(let n) = current.kind else { throw error("expected a name, got \(describe(current.kind))") }
        advance()
        return n
    }

    private mutating func expectBlockEnd() throws {
        guard case .blockEnd = current.kind else { throw error("expected end of statement block, got \(describe(current.kind))") }
        advance()
    }

    private func describe(_ kind: JinjaToken.Kind) -> String {
        switch kind {
        case .text: return "text"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "end of statement block"
        case .variableBegin: return "'{{'"
        case .variableEnd: return "end of print statement"
        case .name(let n): return "'\(n)'"
        case .string(let s): return "string \(s.debugDescription)"
        case .integer(let i): return "integer \(i)"
        case .float(let d): return "float \(d)"
        case .op(let o): return "'\(o)'"
        case .end: return "end of template"
        }
    }

    /// Parses nodes until one of `endTags` opens a block; returns that tag name (its block begin is consumed).
    private mutating func parseBody(until endTags: Set<String>) throws -> ([JinjaNode], String?) {
        var nodes: [JinjaNode] = []
        while true {
            let token = current
            switch token.kind {
            case .end:
                if !endTags.isEmpty {
                    throw error(
                        "Unexpected end of template. Jinja was looking for the following tags: \(endTags.sorted().map { "'\($0)'" }.joined(separator: " or "))."
                    )
                }
                return (nodes, nil)
            case .text(let text):
                advance()
                nodes.append(.text(text))
            case .variableBegin:
                advance()
                let expr = try parseExpression()
                guard case .variableEnd = current.kind else { throw error("expected end of print statement, got \(describe(current.kind))") }
                advance()
                nodes.append(.output(expr, line: token.line))
            case .blockBegin:
                advance()
                guard case .name(let tag) = current.kind else { throw error("tag name expected") }
                if endTags.contains(tag) {
                    advance()
                    return (nodes, tag)
                }
                advance()
                nodes.append(try parseStatement(tag, line: token.line))
            default:
                throw error("unexpected \(describe(token.kind))")
            }
        }
    }

    private mutating func parseStatement(_ tag: String, line: Int) throws -> JinjaNode {
        try enter()
        defer { nesting -= 1 }
        switch tag {
        case "if":
            var branches: [(JinjaExpr, [JinjaNode])] = []
            var condition = try parseExpression()
            try expectBlockEnd()
            while true {
                let (body, end) = try parseBody(until: ["elif", "else", "endif"])
                branches.append((condition, body))
                if end == "elif" {
                    condition = try parseExpression()
                    try expectBlockEnd()
                    continue
                }
                var otherwise: [JinjaNode] = []
                if end == "else" {
                    try expectBlockEnd()
                    (otherwise, _) = try parseBody(until: ["endif"])
                }
                try expectBlockEnd()
                return .conditional(branches, otherwise: otherwise, line: line)
            }
        case "for":
            let target = try parseAssignTarget(allowAttribute: false)
            guard isName("in") else { throw error("expected 'in', got \(describe(current.kind))") }
            advance()
            let iterable = try parseConditionalFree()
            var filter: JinjaExpr? = nil
            if isName("if") {
                advance()
                filter = try parseConditionalFree()
            }
            if isName("recursive") { throw error("recursive loops are not supported") }
            try expectBlockEnd()
            let (body, end) = try parseBody(until: ["endfor", "else"])
            var otherwise: [JinjaNode] = []
            if end == "else" {
                try expectBlockEnd()
                (otherwise, _) = try parseBody(until: ["endfor"])
            }
            try expectBlockEnd()
            return .loop(target, iterable, filter: filter, body: body, otherwise: otherwise, line: line)
        case "set":
            let target = try parseAssignTarget(allowAttribute: true)
            if isOp("=") {
                advance()
                let value = try parseTupleExpression()
                try expectBlockEnd()
                return .set(target, value, line: line)
            }
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endset"])
            try expectBlockEnd()
            return .setBlock(target, body: body, line: line)
        case "macro":
            let name = try expectName()
            let parameters = try parseParameters()
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endmacro"])
            if case .name = current.kind { advance() }
            try expectBlockEnd()
            return .macro(name, parameters: parameters, body: body)
        case "call":
            var parameters: [(String, JinjaExpr?)] = []
            if isOp("(") { parameters = try parseParameters() }
            let callee = try parseExpression()
            guard case .call = callee else { throw error("expected call") }
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endcall"])
            try expectBlockEnd()
            return .callBlock(callee, parameters: parameters, body: body, line: line)
        case "filter":
            let name = try expectName()
            var args = JinjaArguments()
            if isOp("(") { args = try parseCallArguments() }
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endfilter"])
            try expectBlockEnd()
            return .filterBlock(name, args, body: body, line: line)
        case "generation":
            // transformers' `{% generation %}` marks assistant text for masks; it renders its body unchanged.
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endgeneration"])
            try expectBlockEnd()
            return .conditional([(.literal(.bool(true)), body)], otherwise: [], line: line)
        case "break":
            try expectBlockEnd()
            return .breakLoop(line: line)
        case "continue":
            try expectBlockEnd()
            return .continueLoop(line: line)
        default:
            throw ANELMError("chat template syntax error at line \(line): Encountered unknown tag '\(tag)'.")
        }
    }

    private mutating func parseParameters() throws -> [(String, JinjaExpr?)] {
        try expectOp("(")
        var parameters: [(String, JinjaExpr?)] = []
        while !isOp(")") {
            if !parameters.isEmpty { try expectOp(",") }
            if isOp(")") { break }
            let name = try expectName()
            var value: JinjaExpr? = nil
            if isOp("=") {
                advance()
                value = try parseExpression()
            }
            parameters.append((name, value))
        }
        advance()
        return parameters
    }

    private mutating func parseAssignTarget(allowAttribute: Bool) throws -> JinjaTarget {
        let first: String
        switch current.kind {
        case .name(let n) where !["true", "false", "none", "True", "False", "None"].contains(n):
            first = n
            advance()
        default:
            throw error("can't assign to \(describe(current.kind))")
        }
        if allowAttribute && isOp(".") {
            advance()
            return .attribute(first, try expectName())
        }
        var names = [first]
        while isOp(",") {
            advance()
            guard case .name(let n) = current.kind else { break }
            names.append(n)
            advance()
        }
        return names.count == 1 && !isOp(",") ? .name(first) : .tuple(names)
    }

    // MARK: Expressions

    /// `a, b` without brackets (used by `set`).
    private mutating func parseTupleExpression() throws -> JinjaExpr {
        let first = try parseExpression()
        guard isOp(",") else { return first }
        var items = [first]
        while isOp(",") {
            advance()
            if case .blockEnd = current.kind { break }
            items.append(try parseExpression())
        }
        return .tuple(items)
    }

    mutating func parseExpression() throws -> JinjaExpr {
        try enter()
        defer { nesting -= 1 }
        let value = try parseOr()
        guard isName("if") else { return value }
        advance()
        let condition = try parseOr()
        var otherwise: JinjaExpr? = nil
        if isName("else") {
            advance()
            otherwise = try parseExpression()
        }
        return .conditional(condition, then: value, otherwise: otherwise)
    }

    /// An expression without a trailing `if … else` (for-loop iterables and filters).
    private mutating func parseConditionalFree() throws -> JinjaExpr { try parseOr() }

    private mutating func parseOr() throws -> JinjaExpr {
        var left = try parseAnd()
        while isName("or") {
            advance()
            left = .or(left, try parseAnd())
        }
        return left
    }

    private mutating func parseAnd() throws -> JinjaExpr {
        var left = try parseNot()
        while isName("and") {
            advance()
            left = .and(left, try parseNot())
        }
        return left
    }

    private mutating func parseNot() throws -> JinjaExpr {
        if isName("not") {
            advance()
            try enter()
            defer { nesting -= 1 }
            return .not(try parseNot())
        }
        return try parseCompare()
    }

    private mutating func parseCompare() throws -> JinjaExpr {
        let left = try parseMath1()
        var operations: [(String, JinjaExpr)] = []
        while true {
            if case .op(let op) = current.kind, ["==", "!=", "<", ">", "<=", ">="].contains(op) {
                advance()
                operations.append((op, try parseMath1()))
            } else if isName("in") {
                advance()
                operations.append(("in", try parseMath1()))
            } else if isName("not"), index + 1 < tokens.count, case .name("in") = tokens[index + 1].kind {
                index += 2
                operations.append(("notin", try parseMath1()))
            } else {
                break
            }
        }
        return operations.isEmpty ? left : .compare(left, operations)
    }

    private mutating func parseMath1() throws -> JinjaExpr {
        var left = try parseConcat()
        while case .op(let op) = current.kind, op == "+" || op == "-" {
            advance()
            left = .binary(op, left, try parseConcat())
        }
        return left
    }

    private mutating func parseConcat() throws -> JinjaExpr {
        var left = try parseMath2()
        while isOp("~") {
            advance()
            left = .binary("~", left, try parseMath2())
        }
        return left
    }

    private mutating func parseMath2() throws -> JinjaExpr {
        var left = try parsePow()
        while case .op(let op) = current.kind, ["*", "/", "//", "%"].contains(op) {
            advance()
            left = .binary(op, left, try parsePow())
        }
        return left
    }

    private mutating func parsePow() throws -> JinjaExpr {
        var left = try parseUnary(withFilter: true)
        while isOp("**") {
            advance()
            left = .binary("**", left, try parseUnary(withFilter: true))
        }
        return left
    }

    private mutating func parseUnary(withFilter: Bool) throws -> JinjaExpr {
        try enter()
        defer { nesting -= 1 }
        var node: JinjaExpr
        if isOp("-") {
            advance()
            node = .unary("-", try parseUnary(withFilter: false))
        } else if isOp("+") {
            advance()
            node = .unary("+", try parseUnary(withFilter: false))
        } else {
            node = try parsePostfix(try parsePrimary())
        }
        if withFilter { node = try parseFilterAndTests(node) }
        return node
    }

    private mutating func parsePrimary() throws -> JinjaExpr {
        let token = current
        switch token.kind {
        case .name(let n):
            advance()
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .string(var s):
            advance()
            // Adjacent string literals concatenate, as in Python.
            while case .string(let next) = current.kind {
                s += next
                advance()
            }
            return .literal(.string(s))
        case .integer(let i):
            advance()
            return .literal(.int(i))
        case .float(let d):
            advance()
            return .literal(.double(d))
        case .op("("):
            advance()
            if isOp(")") {
                advance()
                return .tuple([])
            }
            let first = try parseExpression()
            if isOp(")") {
                advance()
                return first
            }
            var items = [first]
            while isOp(",") {
                advance()
                if isOp(")") { break }
                items.append(try parseExpression())
            }
            try expectOp(")")
            return .tuple(items)
        case .op("["):
            advance()
            var items: [JinjaExpr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            advance()
            return .list(items)
        case .op("{"):
            advance()
            var pairs: [(JinjaExpr, JinjaExpr)] = []
            while !isOp("}") {
                if !pairs.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let key = try parseExpression()
                try expectOp(":")
                pairs.append((key, try parseExpression()))
            }
            advance()
            return .dict(pairs)
        default:
            throw error("unexpected \(describe(token.kind))")
        }
    }

    private mutating func parsePostfix(_ base: JinjaExpr) throws -> JinjaExpr {
        var node = base
        while true {
            if isOp(".") {
                advance()
                switch current.kind {
                case .name(let n):
                    advance()
                    node = .attribute(node, n)
                case .integer(let i):
                    advance()
                    node = .item(node, .literal(.int(i)))
                default: throw error("expected name or number after '.'")
                }
            } else if isOp("[") {
                advance()
                node = try parseSubscript(node)
            } else if isOp("(") {
                node = .call(node, try parseCallArguments())
            } else {
                return node
            }
        }
    }

    private mutating func parseSubscript(_ base: JinjaExpr) throws -> JinjaExpr {
        var parts: [JinjaExpr?] = [nil]
        var isSlice = false
        while !isOp("]") {
            if isOp(":") {
                isSlice = true
                advance()
                parts.append(nil)
                continue
            }
            if case .some = parts[parts.count - 1] { throw error("expected ']' in subscript") }
            parts[parts.count - 1] = try parseExpression()
        }
        advance()
        if !isSlice {
            guard let key = parts[0] else { throw error("empty subscript") }
            return .item(base, key)
        }
        guard parts.count <= 3 else { throw error("too many ':' in slice") }
        return .slice(base, parts[0], parts.count > 1 ? parts[1] : nil, parts.count > 2 ? parts[2] : nil)
    }

    private mutating func parseCallArguments() throws -> JinjaArguments {
        try expectOp("(")
        var args = JinjaArguments()
        var first = true
        while !isOp(")") {
            if !first { try expectOp(",") }
            first = false
            if isOp(")") { break }
            if case .name(let n) = current.kind, index + 1 < tokens.count, case .op("=") = tokens[index + 1].kind {
                index += 2
                args.keywords.append((n, try parseExpression()))
            } else {
                guard args.keywords.isEmpty else { throw error("positional argument after keyword argument") }
                args.positional.append(try parseExpression())
            }
        }
        advance()
        return args
    }

    private mutating func parseFilterAndTests(_ base: JinjaExpr) throws -> JinjaExpr {
        var node = base
        while true {
            if isOp("|") {
                advance()
                let filterLine = line
                var name = try expectName()
                while isOp(".") {
                    advance()
                    name += "." + (try expectName())
                }
                var args = JinjaArguments()
                if isOp("(") { args = try parseCallArguments() }
                node = .filter(node, name, args, line: filterLine)
            } else if isName("is") {
                advance()
                let testLine = line
                var negated = false
                if isName("not") {
                    advance()
                    negated = true
                }
                var name = try expectName()
                while isOp(".") {
                    advance()
                    name += "." + (try expectName())
                }
                var args = JinjaArguments()
                if isOp("(") {
                    args = try parseCallArguments()
                } else if startsBareTestArgument() {
                    args.positional = [try parsePostfix(try parsePrimary())]
                }
                node = .test(node, name, args, negated: negated, line: testLine)
            } else {
                return node
            }
        }
    }

    /// `x is divisibleby 3`: a test may take one argument without parentheses.
    private func startsBareTestArgument() -> Bool {
        switch current.kind {
        case .name(let n): return !["else", "or", "and", "if", "in", "not", "is"].contains(n)
        case .string, .integer, .float: return true
        case .op(let o): return o == "[" || o == "{"
        default: return false
        }
    }
}
