import Foundation

/// One message of a conversation, as chat templates see it (`message['role']`, `message['content']`).
public struct ChatMessage: Sendable, Equatable, Codable {
    public var role: String
    public var content: String
    /// Calls an assistant turn made (`message['tool_calls']`, arguments as objects when they are JSON).
    public var toolCalls: [ToolCall]?
    /// The call a `tool` message answers (`message['tool_call_id']`).
    public var toolCallID: String?
    /// The function a `tool` message comes from (`message['name']`).
    public var name: String?

    /// A message with a role (`system`, `user`, `assistant`, `tool`, …) and its text.
    public init(role: String, content: String, toolCalls: [ToolCall]? = nil, toolCallID: String? = nil, name: String? = nil) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
        self.name = name
    }

    /// The message as templates see it: OpenAI's shape, tool call arguments parsed (templates `tojson` them).
    var jinjaValue: JinjaValue {
        var object = JinjaObject([("role", .string(role)), ("content", .string(content))])
        if let toolCalls {
            object["tool_calls"] = .array(
                toolCalls.map { call in
                    let arguments = (try? JinjaValue.fromJSON(call.arguments)) ?? .string(call.arguments)
                    let function = JinjaObject([("name", .string(call.name)), ("arguments", arguments)])
                    return .object(JinjaObject([("id", .string(call.id)), ("type", .string("function")), ("function", .object(function))]))
                })
        }
        if let toolCallID { object["tool_call_id"] = .string(toolCallID) }
        if let name { object["name"] = .string(name) }
        return .object(object)
    }
}

/// A model's Jinja chat template, parsed once and rendered as transformers' `apply_chat_template` does.
public struct ChatTemplate: Sendable {
    private let nodes: [JinjaNode]

    /// Parses `source`; syntax errors, unknown filters and unknown tests throw an `ANELMError` naming the line.
    public init(_ source: String) throws {
        let tokens = try JinjaLexer.tokenize(source)
        nodes = try JinjaParser.parse(tokens)
        try Self.validate(nodes)
    }

    /// Renders a conversation. `bosToken`/`eosToken` nil leaves them undefined (as for tokenizers without them);
    /// `extra` adds or overrides template variables (e.g. `date_string`, `tools`, `enable_thinking`).
    public func render(
        messages: [ChatMessage], addGenerationPrompt: Bool, bosToken: String?, eosToken: String?,
        extra: [String: JinjaValue] = [:]
    ) throws -> String {
        let messageValues = messages.map(\.jinjaValue)
        var variables: [String: JinjaValue] = [
            "messages": .array(messageValues),
            "add_generation_prompt": .bool(addGenerationPrompt),
            "tools": .none,
            "documents": .none,
        ]
        if let bosToken { variables["bos_token"] = .string(bosToken) }
        if let eosToken { variables["eos_token"] = .string(eosToken) }
        for (key, value) in extra { variables[key] = value }
        let interpreter = JinjaInterpreter()
        let globals = JinjaScope(parent: nil, Self.globals(interpreter))
        return try interpreter.render(nodes, scope: JinjaScope(parent: globals, variables))
    }

    private static func globals(_ interpreter: JinjaInterpreter) -> [String: JinjaValue] {
        [
            "raise_exception": .function(
                JinjaFunction("raise_exception") { args, _ in
                    throw ANELMError(args.first?.printed ?? "")
                }),
            "strftime_now": .function(
                JinjaFunction("strftime_now") { args, _ in
                    .string(strftimeNow(args.first?.printed ?? ""))
                }),
            "namespace": .function(
                JinjaFunction("namespace") { args, kwargs in
                    var attributes = JinjaObject()
                    if let first = args.first, case .object(let o) = first { attributes = o }
                    for (key, value) in kwargs {
                        guard !key.hasPrefix("_") else {
                            throw ANELMError("Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(key)'.")
                        }
                        attributes[key] = value
                    }
                    return .namespace(JinjaNamespace(attributes))
                }),
            "dict": .function(
                JinjaFunction("dict") { args, kwargs in
                    var object = JinjaObject()
                    if let first = args.first, case .object(let o) = first { object = o }
                    for (key, value) in kwargs { object[key] = value }
                    return .object(object)
                }),
            "range": .function(
                JinjaFunction("range") { args, _ in
                    let ints = args.compactMap(\.intValue)
                    guard ints.count == args.count, (1...3).contains(ints.count) else { throw interpreter.fail("range expects 1 to 3 integers") }
                    let start = ints.count == 1 ? 0 : ints[0]
                    let stop = ints.count == 1 ? ints[0] : ints[1]
                    let step = ints.count == 3 ? ints[2] : 1
                    guard step != 0 else { throw interpreter.fail("range() arg 3 must not be zero") }
                    // Counted in Double first so extreme bounds cannot overflow.
                    let estimate = (Double(stop) - Double(start)) / Double(step)
                    guard estimate <= 1_000_000 else { throw interpreter.fail("range too large") }
                    let count = max(0, Int(estimate.rounded(.up)))
                    guard count <= 1_000_000 else { throw interpreter.fail("range too large (\(count) items)") }
                    return .array((0..<count).map { .int(start + $0 * step) })
                }),
        ]
    }

    /// jinja2 rejects unknown filters and tests when compiling; so do we.
    private static func validate(_ nodes: [JinjaNode]) throws {
        func check(_ e: JinjaExpr?) throws {
            guard let e else { return }
            switch e {
            case .literal, .name: break
            case .list(let items), .tuple(let items): for i in items { try check(i) }
            case .dict(let pairs):
                for (k, v) in pairs {
                    try check(k)
                    try check(v)
                }
            case .attribute(let b, _): try check(b)
            case .item(let b, let k):
                try check(b)
                try check(k)
            case .slice(let b, let x, let y, let z):
                try check(b)
                try check(x)
                try check(y)
                try check(z)
            case .call(let c, let args):
                try check(c)
                try checkArgs(args)
            case .filter(let b, let name, let args, let line):
                guard JinjaInterpreter.knownFilters.contains(name) else {
                    throw ANELMError("chat template syntax error at line \(line): No filter named '\(name)'.")
                }
                try check(b)
                try checkArgs(args)
            case .test(let b, let name, let args, _, let line):
                guard JinjaInterpreter.knownTests.contains(name) else {
                    throw ANELMError("chat template syntax error at line \(line): No test named '\(name)'.")
                }
                try check(b)
                try checkArgs(args)
            case .unary(_, let x), .not(let x): try check(x)
            case .binary(_, let a, let b), .and(let a, let b), .or(let a, let b):
                try check(a)
                try check(b)
            case .compare(let a, let ops):
                try check(a)
                for (_, x) in ops { try check(x) }
            case .conditional(let c, let t, let o):
                try check(c)
                try check(t)
                try check(o)
            }
        }
        func checkArgs(_ args: JinjaArguments) throws {
            for a in args.positional { try check(a) }
            for (_, a) in args.keywords { try check(a) }
        }
        for node in nodes {
            switch node {
            case .text, .breakLoop, .continueLoop: break
            case .output(let e, _), .set(_, let e, _): try check(e)
            case .conditional(let branches, let otherwise, _):
                for (c, body) in branches {
                    try check(c)
                    try validate(body)
                }
                try validate(otherwise)
            case .loop(_, let iterable, let filter, let body, let otherwise, _):
                try check(iterable)
                try check(filter)
                try validate(body)
                try validate(otherwise)
            case .setBlock(_, let body, _), .macro(_, _, let body): try validate(body)
            case .callBlock(let c, let parameters, let body, _):
                try check(c)
                for (_, d) in parameters { try check(d) }
                try validate(body)
            case .filterBlock(let name, let args, let body, let line):
                guard JinjaInterpreter.knownFilters.contains(name) else {
                    throw ANELMError("chat template syntax error at line \(line): No filter named '\(name)'.")
                }
                try checkArgs(args)
                try validate(body)
            }
        }
    }
}

/// Python's `datetime.now().strftime(format)` for the common directives templates use.
func strftimeNow(_ format: String, date: Date = Date()) -> String {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone.current
    var out = ""
    var chars = Array(format)[...]
    while let c = chars.popFirst() {
        guard c == "%", let d = chars.popFirst() else {
            out.append(c)
            continue
        }
        let pattern: String?
        switch d {
        case "d": pattern = "dd"
        case "b": pattern = "MMM"
        case "B": pattern = "MMMM"
        case "Y": pattern = "yyyy"
        case "y": pattern = "yy"
        case "m": pattern = "MM"
        case "H": pattern = "HH"
        case "I": pattern = "hh"
        case "M": pattern = "mm"
        case "S": pattern = "ss"
        case "p": pattern = "a"
        case "a": pattern = "EEE"
        case "A": pattern = "EEEE"
        case "j": pattern = "DDD"
        case "%":
            pattern = nil
            out.append("%")
        default:
            pattern = nil
            out.append("%")
            out.append(d)
        }
        if let pattern {
            formatter.dateFormat = pattern
            out += formatter.string(from: date)
        }
    }
    return out
}
