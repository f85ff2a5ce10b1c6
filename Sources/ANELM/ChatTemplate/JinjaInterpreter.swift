import Foundation

/// Variables visible at one nesting level; loops and macros open a new one, `if` does not (as in jinja2).
final class JinjaScope {
    private var variables: [String: JinjaValue] = [:]
    let parent: JinjaScope?

    init(parent: JinjaScope?, _ variables: [String: JinjaValue] = [:]) {
        self.parent = parent
        self.variables = variables
    }

    func lookup(_ name: String) -> JinjaValue? { variables[name] ?? parent?.lookup(name) }
    func set(_ name: String, _ value: JinjaValue) { variables[name] = value }
}

/// Evaluates a parsed template. One instance per render call.
final class JinjaInterpreter {
    static let maxOutputBytes = 32 << 20
    static let maxIterations = 1_000_000
    static let maxDepth = 200

    private var outputBytes = 0
    private var iterations = 0
    private var depth = 0
    var line = 1

    private enum Flow { case normal, breakLoop, continueLoop }

    func fail(_ message: String) -> ANELMError { ANELMError("chat template error at line \(line): \(message)") }

    func render(_ nodes: [JinjaNode], scope: JinjaScope) throws -> String {
        var out = ""
        let flow = try execute(nodes, scope: scope, into: &out)
        if flow != .normal { throw fail("'break' or 'continue' outside a loop") }
        return out
    }

    private func emit(_ text: String, into out: inout String) throws {
        outputBytes += text.utf8.count
        guard outputBytes <= Self.maxOutputBytes else { throw fail("output exceeds \(Self.maxOutputBytes) bytes") }
        out += text
    }

    private func execute(_ nodes: [JinjaNode], scope: JinjaScope, into out: inout String) throws -> Flow {
        for node in nodes {
            switch node {
            case .text(let text):
                try emit(text, into: &out)
            case .output(let expr, let line):
                self.line = line
                try emit(try evaluate(expr, scope).printed, into: &out)
            case .conditional(let branches, let otherwise, let line):
                self.line = line
                var chosen = otherwise
                for (condition, body) in branches where try evaluate(condition, scope).isTruthy {
                    chosen = body
                    break
                }
                let flow = try execute(chosen, scope: scope, into: &out)
                if flow != .normal { return flow }
            case .loop(let target, let iterableExpr, let filter, let body, let otherwise, let line):
                self.line = line
                try runLoop(target, iterableExpr, filter, body, otherwise, scope: scope, into: &out)
            case .set(let target, let expr, let line):
                self.line = line
                try assign(target, try evaluate(expr, scope), scope: scope)
            case .setBlock(let target, let body, let line):
                self.line = line
                var captured = ""
                _ = try execute(body, scope: JinjaScope(parent: scope), into: &captured)
                try assign(target, .string(captured), scope: scope)
            case .macro(let name, let parameters, let body):
                scope.set(name, .function(makeMacro(name, parameters, body, definitionScope: scope)))
            case .callBlock(let callExpr, let parameters, let body, let line):
                self.line = line
                let caller = makeMacro("caller", parameters, body, definitionScope: scope)
                guard case .call(let calleeExpr, let args) = callExpr else { throw fail("invalid call block") }
                let callee = try evaluate(calleeExpr, scope)
                guard case .function(let function) = callee else { throw fail("'\(callee.typeName)' object is not callable") }
                var (positional, keywords) = try evaluateArguments(args, scope)
                keywords.append(("caller", .function(caller)))
                try emit(try function.body(positional, keywords).printed, into: &out)
            case .filterBlock(let name, let args, let body, let line):
                self.line = line
                var captured = ""
                _ = try execute(body, scope: scope, into: &captured)
                let (positional, keywords) = try evaluateArguments(args, scope)
                try emit(try applyFilter(name, .string(captured), positional, keywords, scope: scope).printed, into: &out)
            case .breakLoop:
                return .breakLoop
            case .continueLoop:
                return .continueLoop
            }
        }
        return .normal
    }

    private func runLoop(
        _ target: JinjaTarget, _ iterableExpr: JinjaExpr, _ filter: JinjaExpr?, _ body: [JinjaNode],
        _ otherwise: [JinjaNode], scope: JinjaScope, into out: inout String
    ) throws {
        let iterable = try evaluate(iterableExpr, scope)
        var items = try iterate(iterable)
        if let filter {
            items = try items.filter { item in
                let filterScope = JinjaScope(parent: scope)
                try assign(target, item, scope: filterScope)
                return try evaluate(filter, filterScope).isTruthy
            }
        }
        if items.isEmpty {
            _ = try execute(otherwise, scope: scope, into: &out)
            return
        }
        let count = items.count
        for (i, item) in items.enumerated() {
            iterations += 1
            guard iterations <= Self.maxIterations else { throw fail("too many loop iterations") }
            let loopScope = JinjaScope(parent: scope)
            try assign(target, item, scope: loopScope)
            var loop = JinjaObject()
            loop["index"] = .int(i + 1)
            loop["index0"] = .int(i)
            loop["revindex"] = .int(count - i)
            loop["revindex0"] = .int(count - i - 1)
            loop["first"] = .bool(i == 0)
            loop["last"] = .bool(i == count - 1)
            loop["length"] = .int(count)
            loop["depth"] = .int(1)
            loop["depth0"] = .int(0)
            loop["previtem"] = i > 0 ? items[i - 1] : .undefined("previtem")
            loop["nextitem"] = i + 1 < count ? items[i + 1] : .undefined("nextitem")
            loop["cycle"] = .function(
                JinjaFunction("cycle") { args, _ in
                    guard !args.isEmpty else { throw ANELMError("no items for cycling given") }
                    return args[i % args.count]
                })
            loopScope.set("loop", .object(loop))
            let flow = try execute(body, scope: loopScope, into: &out)
            if flow == .breakLoop { break }
        }
    }

    private func makeMacro(
        _ name: String, _ parameters: [(String, JinjaExpr?)], _ body: [JinjaNode],
        definitionScope: JinjaScope
    ) -> JinjaFunction {
        JinjaFunction(name) { [unowned self] args, kwargs in
            guard self.depth < Self.maxDepth else { throw self.fail("macro recursion too deep") }
            self.depth += 1
            defer { self.depth -= 1 }
            let scope = JinjaScope(parent: definitionScope)
            guard args.count <= parameters.count else { throw self.fail("macro '\(name)' takes not more than \(parameters.count) argument(s)") }
            for (i, (param, defaultExpr)) in parameters.enumerated() {
                if i < args.count {
                    scope.set(param, args[i])
                } else if let kw = kwargs.first(where: { $0.0 == param }) {
                    scope.set(param, kw.1)
                } else if let defaultExpr {
                    scope.set(param, try self.evaluate(defaultExpr, scope))
                } else {
                    scope.set(param, .undefined(param))
                }
            }
            if let caller = kwargs.first(where: { $0.0 == "caller" }) { scope.set("caller", caller.1) }
            var out = ""
            _ = try self.execute(body, scope: scope, into: &out)
            return .string(out)
        }
    }

    private func assign(_ target: JinjaTarget, _ value: JinjaValue, scope: JinjaScope) throws {
        switch target {
        case .name(let name):
            scope.set(name, value)
        case .attribute(let name, let attribute):
            guard case .namespace(let ns)? = scope.lookup(name) else {
                throw fail("cannot assign attribute on non-namespace object")
            }
            ns.attributes[attribute] = value
        case .tuple(let names):
            let items = try iterate(value)
            guard items.count == names.count else {
                throw fail(
                    items.count > names.count
                        ? "too many values to unpack (expected \(names.count))"
                        : "not enough values to unpack (expected \(names.count), got \(items.count))")
            }
            for (name, item) in zip(names, items) { scope.set(name, item) }
        }
    }

    /// The items a `for` loop visits (dicts yield keys; strings yield characters; undefined yields nothing).
    func iterate(_ value: JinjaValue) throws -> [JinjaValue] {
        switch value {
        case .array(let items), .tuple(let items): return items
        case .object(let o): return o.keys.map { .string($0) }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        case .namespace(let ns): return ns.attributes.keys.map { .string($0) }
        default: throw fail("'\(value.typeName)' object is not iterable")
        }
    }

    // MARK: Expressions

    func evaluateArguments(_ args: JinjaArguments, _ scope: JinjaScope) throws -> ([JinjaValue], [(String, JinjaValue)]) {
        (try args.positional.map { try evaluate($0, scope) }, try args.keywords.map { ($0.0, try evaluate($0.1, scope)) })
    }

    func evaluate(_ expr: JinjaExpr, _ scope: JinjaScope) throws -> JinjaValue {
        switch expr {
        case .literal(let literal): return literal.value
        case .name(let name): return scope.lookup(name) ?? .undefined(name)
        case .list(let items): return .array(try items.map { try evaluate($0, scope) })
        case .tuple(let items): return .tuple(try items.map { try evaluate($0, scope) })
        case .dict(let pairs):
            var object = JinjaObject()
            for (keyExpr, valueExpr) in pairs {
                let key = try evaluate(keyExpr, scope)
                guard case .string(let k) = key else { throw fail("only string keys are supported in dict literals") }
                object[k] = try evaluate(valueExpr, scope)
            }
            return .object(object)
        case .attribute(let baseExpr, let name):
            return try attribute(of: try evaluate(baseExpr, scope), name)
        case .item(let baseExpr, let keyExpr):
            return try item(of: try evaluate(baseExpr, scope), try evaluate(keyExpr, scope))
        case .slice(let baseExpr, let startExpr, let stopExpr, let stepExpr):
            let base = try evaluate(baseExpr, scope)
            func bound(_ e: JinjaExpr?) throws -> Int? {
                guard let e else { return nil }
                let v = try evaluate(e, scope)
                if case .none = v { return nil }
                guard let i = v.intValue else { throw fail("slice indices must be integers or None") }
                return i
            }
            return try slice(base, try bound(startExpr), try bound(stopExpr), try bound(stepExpr))
        case .call(let calleeExpr, let args):
            let (positional, keywords) = try evaluateArguments(args, scope)
            if case .attribute(let objectExpr, let method) = calleeExpr {
                let object = try evaluate(objectExpr, scope)
                if let result = try callMethod(object, method, positional, keywords) { return result }
                let callee = try attribute(of: object, method)
                guard case .function(let f) = callee else { throw fail("'\(object.typeName)' object has no callable attribute '\(method)'") }
                return try f.body(positional, keywords)
            }
            let callee = try evaluate(calleeExpr, scope)
            guard case .function(let f) = callee else {
                if case .undefined(let name) = callee { throw fail("'\(name)' is undefined") }
                throw fail("'\(callee.typeName)' object is not callable")
            }
            return try f.body(positional, keywords)
        case .filter(let baseExpr, let name, let args, let line):
            let base = try evaluate(baseExpr, scope)
            self.line = line
            let (positional, keywords) = try evaluateArguments(args, scope)
            return try applyFilter(name, base, positional, keywords, scope: scope)
        case .test(let baseExpr, let name, let args, let negated, let line):
            let base = try evaluate(baseExpr, scope)
            self.line = line
            let (positional, _) = try evaluateArguments(args, scope)
            let result = try applyTest(name, base, positional)
            return .bool(negated ? !result : result)
        case .unary(let op, let operandExpr):
            let operand = try evaluate(operandExpr, scope)
            switch operand {
            case .int(let i): return op == "-" ? .int(0 &- i) : .int(i)
            case .double(let d): return op == "-" ? .double(-d) : .double(d)
            case .bool(let b): return .int(op == "-" ? (b ? -1 : 0) : (b ? 1 : 0))
            default: throw fail("bad operand type for unary \(op): '\(operand.typeName)'")
            }
        case .binary(let op, let leftExpr, let rightExpr):
            return try binary(op, try evaluate(leftExpr, scope), try evaluate(rightExpr, scope))
        case .compare(let firstExpr, let operations):
            var left = try evaluate(firstExpr, scope)
            for (op, rightExpr) in operations {
                let right = try evaluate(rightExpr, scope)
                guard try compare(op, left, right) else { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .and(let leftExpr, let rightExpr):
            let left = try evaluate(leftExpr, scope)
            return left.isTruthy ? try evaluate(rightExpr, scope) : left
        case .or(let leftExpr, let rightExpr):
            let left = try evaluate(leftExpr, scope)
            return left.isTruthy ? left : try evaluate(rightExpr, scope)
        case .not(let operand):
            return .bool(!(try evaluate(operand, scope).isTruthy))
        case .conditional(let condition, let then, let otherwise):
            if try evaluate(condition, scope).isTruthy { return try evaluate(then, scope) }
            guard let otherwise else { return .undefined("conditional expression") }
            return try evaluate(otherwise, scope)
        }
    }

    /// `obj.name`: dict key, namespace attribute or loop field; missing → undefined (error on undefined itself).
    func attribute(of base: JinjaValue, _ name: String) throws -> JinjaValue {
        switch base {
        case .undefined(let baseName): throw fail("'\(baseName)' is undefined")
        case .object(let o): return o[name] ?? .undefined(name)
        case .namespace(let ns): return ns.attributes[name] ?? .undefined(name)
        default: return .undefined(name)
        }
    }

    /// `obj[key]`: list index (negative from the end), dict key; missing → undefined.
    func item(of base: JinjaValue, _ key: JinjaValue) throws -> JinjaValue {
        switch (base, key) {
        case (.undefined(let baseName), _): throw fail("'\(baseName)' is undefined")
        case (.array(let items), _), (.tuple(let items), _):
            guard let i = key.intValue else { return .undefined("item") }
            let index = i < 0 ? items.count + i : i
            return items.indices.contains(index) ? items[index] : .undefined("item")
        case (.string(let s), _):
            guard let i = key.intValue else { return .undefined("item") }
            // Python indexes strings by code point, not by grapheme cluster.
            let scalars = Array(s.unicodeScalars)
            let index = i < 0 ? scalars.count + i : i
            return scalars.indices.contains(index) ? .string(String(scalars[index])) : .undefined("item")
        case (.object(let o), .string(let k)): return o[k] ?? .undefined(k)
        case (.namespace(let ns), .string(let k)): return ns.attributes[k] ?? .undefined(k)
        default: return .undefined("item")
        }
    }

    func slice(_ base: JinjaValue, _ start: Int?, _ stop: Int?, _ step: Int?) throws -> JinjaValue {
        func pick<T>(_ items: [T]) throws -> [T] {
            let step = step ?? 1
            guard step != 0 else { throw fail("slice step cannot be zero") }
            let n = items.count
            func clamp(_ v: Int?, _ dflt: Int, low: Int, high: Int) -> Int {
                guard var v else { return dflt }
                if v < 0 { v += n }
                return min(max(v, low), high)
            }
            var result: [T] = []
            if step > 0 {
                var i = clamp(start, 0, low: 0, high: n)
                let end = clamp(stop, n, low: 0, high: n)
                while i < end {
                    result.append(items[i])
                    i += step
                }
            } else {
                var i = clamp(start, n - 1, low: -1, high: n - 1)
                let end = clamp(stop, -1, low: -1, high: n - 1)
                while i > end {
                    result.append(items[i])
                    i += step
                }
            }
            return result
        }
        switch base {
        case .array(let items): return .array(try pick(items))
        case .tuple(let items): return .tuple(try pick(items))
        case .string(let s):
            var view = String.UnicodeScalarView()
            view.append(contentsOf: try pick(Array(s.unicodeScalars)))
            return .string(String(view))
        case .undefined(let name): throw fail("'\(name)' is undefined")
        default: throw fail("'\(base.typeName)' object is not subscriptable")
        }
    }

    func binary(_ op: String, _ left: JinjaValue, _ right: JinjaValue) throws -> JinjaValue {
        if op == "~" { return .string(left.printed + right.printed) }
        if case .undefined(let name) = left { throw fail("'\(name)' is undefined") }
        if case .undefined(let name) = right { throw fail("'\(name)' is undefined") }
        switch (op, left, right) {
        case ("+", .string(let a), .string(let b)): return .string(a + b)
        case ("+", .array(let a), .array(let b)): return .array(a + b)
        case ("+", .tuple(let a), .tuple(let b)): return .tuple(a + b)
        case ("*", .string(let s), _) where right.intValue != nil:
            return .string(String(repeating: s, count: max(0, min(right.intValue ?? 0, Self.maxOutputBytes / max(1, s.utf8.count)))))
        case ("*", .array(let a), _) where right.intValue != nil:
            let n = max(0, right.intValue ?? 0)
            let total = a.count.multipliedReportingOverflow(by: n)
            guard !total.overflow, total.partialValue <= 1_000_000 else { throw fail("list repetition too large") }
            return .array(Array(repeating: a, count: n).flatMap { $0 })
        default: break
        }
        if let a = left.intValue, let b = right.intValue {
            switch op {
            case "+":
                let r = a.addingReportingOverflow(b)
                if !r.overflow { return .int(r.partialValue) }
            case "-":
                let r = a.subtractingReportingOverflow(b)
                if !r.overflow { return .int(r.partialValue) }
            case "*":
                let r = a.multipliedReportingOverflow(by: b)
                if !r.overflow { return .int(r.partialValue) }
            case "/":
                guard b != 0 else { throw fail("division by zero") }
                return .double(Double(a) / Double(b))
            case "//":
                guard b != 0 else { throw fail("integer division or modulo by zero") }
                let (q, overflow) = a.dividedReportingOverflow(by: b)
                guard !overflow else { throw fail("integer overflow in '//'") }
                return .int((a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q)
            case "%":
                guard b != 0 else { throw fail("integer division or modulo by zero") }
                let r = a.remainderReportingOverflow(dividingBy: b).partialValue
                return .int(r != 0 && (r < 0) != (b < 0) ? r + b : r)
            case "**":
                if b >= 0 {
                    var result = 1
                    for _ in 0..<min(b, 64) {
                        let r = result.multipliedReportingOverflow(by: a)
                        if r.overflow { throw fail("integer result too large") }
                        result = r.partialValue
                    }
                    if b > 64 && abs(a) > 1 { throw fail("integer result too large") }
                    return .int(b > 64 ? (a == -1 && b % 2 == 1 ? -1 : (a == 0 ? 0 : 1)) : result)
                }
                return .double(pow(Double(a), Double(b)))
            default: break
            }
            throw fail("integer overflow in '\(op)'")
        }
        if let a = left.numericValue, let b = right.numericValue {
            switch op {
            case "+": return .double(a + b)
            case "-": return .double(a - b)
            case "*": return .double(a * b)
            case "/":
                guard b != 0 else { throw fail("float division by zero") }
                return .double(a / b)
            case "//":
                guard b != 0 else { throw fail("float floor division by zero") }
                return .double((a / b).rounded(.down))
            case "%":
                guard b != 0 else { throw fail("float modulo") }
                let r = a.truncatingRemainder(dividingBy: b)
                return .double(r != 0 && (r < 0) != (b < 0) ? r + b : r)
            case "**": return .double(pow(a, b))
            default: break
            }
        }
        throw fail("unsupported operand type(s) for \(op): '\(left.typeName)' and '\(right.typeName)'")
    }

    func compare(_ op: String, _ left: JinjaValue, _ right: JinjaValue) throws -> Bool {
        switch op {
        case "==": return left.pythonEquals(right)
        case "!=": return !left.pythonEquals(right)
        case "in": return try contains(right, left)
        case "notin": return !(try contains(right, left))
        default: break
        }
        let order: Int
        if let a = left.numericValue, let b = right.numericValue {
            order = a < b ? -1 : (a > b ? 1 : 0)
        } else if case .string(let a) = left, case .string(let b) = right {
            order = a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars) ? -1 : (a == b ? 0 : 1)
        } else {
            throw fail("'\(op)' not supported between instances of '\(left.typeName)' and '\(right.typeName)'")
        }
        switch op {
        case "<": return order < 0
        case ">": return order > 0
        case "<=": return order <= 0
        default: return order >= 0
        }
    }

    func contains(_ container: JinjaValue, _ element: JinjaValue) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let e) = element else { throw fail("'in <string>' requires string as left operand, not \(element.typeName)") }
            return e.isEmpty || s.contains(e)
        case .array(let items), .tuple(let items): return items.contains { $0.pythonEquals(element) }
        case .object(let o):
            guard case .string(let k) = element else { return false }
            return o[k] != nil
        case .namespace(let ns):
            guard case .string(let k) = element else { return false }
            return ns.attributes[k] != nil
        case .undefined(let name): throw fail("'\(name)' is undefined")
        default: throw fail("argument of type '\(container.typeName)' is not iterable")
        }
    }
}
