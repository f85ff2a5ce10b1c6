import Foundation

/// A function the model may call (OpenAI's `tools[].function`).
public struct ToolDefinition: Sendable, Equatable {
    public var name: String
    public var description: String?
    /// A JSON schema of the arguments object; `{"type": "object"}` when the tool gave none.
    public var parameters: JSONValue

    public init(name: String, description: String? = nil, parameters: JSONValue? = nil) {
        self.name = name
        self.description = description
        self.parameters = parameters ?? ["type": "object"]
    }

    /// OpenAI's shape, `{"type": "function", "function": {...}}`, which chat templates expect in `tools`.
    public var json: JSONValue {
        var function: JSONObject = ["name": .string(name)]
        if let description { function["description"] = .string(description) }
        function["parameters"] = parameters
        return ["type": "function", "function": .object(function)]
    }
}

/// One call the model made, or one from an earlier assistant turn.
public struct ToolCall: Sendable, Equatable, Codable {
    public var id: String
    public var name: String
    /// The arguments as JSON text (OpenAI sends and expects a string).
    public var arguments: String

    public init(id: String, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

/// OpenAI's `tool_choice`.
public enum ToolChoice: Sendable, Equatable {
    /// The model decides between text and calls.
    case auto
    /// No calls: the tools are not shown to the model.
    case none
    /// At least one call; the grammar enforces it.
    case required
    /// Exactly one call of this function; the grammar enforces it.
    case function(String)
}

/// The tools of a request and how they may be used.
public struct ToolUse: Sendable, Equatable {
    public var tools: [ToolDefinition]
    public var choice: ToolChoice
    /// Several calls in one answer (OpenAI's `parallel_tool_calls`, default true).
    public var parallel: Bool

    public init(tools: [ToolDefinition], choice: ToolChoice = .auto, parallel: Bool = true) {
        self.tools = tools
        self.choice = choice
        self.parallel = parallel
    }

    /// Whether the model sees tools and its output is parsed for calls.
    public var isActive: Bool { !tools.isEmpty && choice != .none }
}

/// How a chat template asks for tool calls and how the model writes them.
public enum ToolCallFormat: String, Sendable, CaseIterable {
    /// Qwen2.5, Hermes: `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`, one block per call.
    case hermes
    /// Llama 3.1+: a JSON object `{"name": …, "parameters": {…}}` (after `<|python_tag|>` for some).
    case llama3
    /// Mistral: `[TOOL_CALLS] [{"name": …, "arguments": {…}}, …]`; call ids are 9 letters and digits.
    case mistral
    /// anelm's own, for templates without tool support: the tools are described in a system message and
    /// the model answers `{"tool_calls": [{"name": …, "arguments": {…}}, …]}`.
    case generic

    /// The format a template's source implies; templates that do not mention `tools` get `generic`.
    public static func detect(templateSource source: String) -> ToolCallFormat {
        guard source.contains("tools") else { return .generic }
        if source.contains("<tool_call>") { return .hermes }
        if source.contains("[TOOL_CALLS]") { return .mistral }
        if source.contains("<|start_header_id|>"), source.contains("parameters") { return .llama3 }
        return .generic
    }

    /// A fresh call id in the shape the format's templates accept.
    public func makeCallID() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        func random(_ count: Int) -> String { String((0..<count).map { _ in alphabet.randomElement() ?? "a" }) }
        return self == .mistral ? random(9) : "call_" + random(24)
    }

    /// The text a call is written as (what the model is trained to produce, and what the grammar allows).
    func callPrefix(_ name: String) -> String {
        let quoted = JSONValue.string(name).text
        switch self {
        case .hermes: return "<tool_call>\n{\"name\": \(quoted), \"arguments\": "
        case .llama3: return "{\"name\": \(quoted), \"parameters\": "
        case .mistral, .generic: return "{\"name\": \(quoted), \"arguments\": "
        }
    }

    var callSuffix: String { self == .hermes ? "}\n</tool_call>" : "}" }
    var listOpening: String {
        switch self {
        case .hermes, .llama3: ""
        case .mistral: "["
        case .generic: "{\"tool_calls\": ["
        }
    }
    var listClosing: String {
        switch self {
        case .hermes, .llama3: ""
        case .mistral: "]"
        case .generic: "]}"
        }
    }
}

extension ToolUse {
    /// The grammar `required` / a named function impose: the output is one call in `format`, naming a tool
    /// allowed, with arguments valid against its `parameters` schema. Nil for `auto` and `none` (where the
    /// model may make several calls, as `parallel` allows).
    /// A schema the grammar compiler does not support is an error naming the tool.
    public func grammar(format: ToolCallFormat) throws -> Grammar? {
        let allowed: [ToolDefinition]
        switch choice {
        case .auto, .none: return nil
        case .required: allowed = tools
        case .function(let name):
            allowed = tools.filter { $0.name == name }
            guard !allowed.isEmpty else { throw ANELMError("tool_choice names the function '\(name)', which is not among the tools") }
        }
        var rules = ""
        var usesGeneric = false
        var calls: [String] = []
        for (index, tool) in allowed.enumerated() {
            let piece: (expression: String, rules: String, usesGeneric: Bool)
            do {
                piece = try JSONSchemaCompiler.embedded(schema: tool.parameters, prefix: "tool\(index)-")
            } catch let error as ANELMError {
                throw ANELMError("the parameters of tool '\(tool.name)': \(error.message)")
            }
            rules += piece.rules
            usesGeneric = usesGeneric || piece.usesGeneric
            calls.append("\(gbnfLiteral(format.callPrefix(tool.name))) \(piece.expression) \(gbnfLiteral(format.callSuffix))")
        }
        var text = "call ::= " + calls.joined(separator: " | ") + "\n"
        // One call: small models forced to call keep adding calls until the token limit when allowed more.
        var root = "call"
        if !format.listOpening.isEmpty { root = "\(gbnfLiteral(format.listOpening)) \(root) \(gbnfLiteral(format.listClosing))" }
        text = "root ::= \(root)\n" + text + rules
        if usesGeneric { text += JSONSchemaCompiler.genericRules }
        return try Grammar(gbnf: text)
    }

    /// A GBNF string literal of `text`.
    private func gbnfLiteral(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// The system text that describes the tools in the generic format.
    public func genericInstructions() -> String {
        var text = "You can call these functions (JSON schemas of their arguments):\n"
        for tool in tools { text += tool.json.text + "\n" }
        text += "To call functions, answer with only a JSON object of this form: "
        text += #"{"tool_calls": [{"name": "<function name>", "arguments": {<the arguments>}}]}"#
        switch choice {
        case .required: text += ". You must call at least one function."
        case .function(let name): text += ". You must call the function \(name)."
        case .auto, .none: text += ". If no function is needed, answer normally."
        }
        return text
    }
}

/// Reads the calls out of a model's answer.
public enum ToolCallParser {
    /// The calls in `text` written in `format` (only calls of known tools with a JSON object of arguments count)
    /// and the text around them; no calls gives back all of `text` as content.
    public static func parse(_ text: String, format: ToolCallFormat, tools: [ToolDefinition]) -> (content: String, calls: [ToolCall]) {
        let names = Set(tools.map(\.name))
        var calls: [ToolCall] = []
        func call(_ value: JSONValue, argumentsKeys: [String] = ["arguments", "parameters"]) -> Bool {
            guard let object = value.objectValue, let name = object["name"]?.stringValue, names.contains(name) else { return false }
            var arguments: JSONValue = [:]
            for key in argumentsKeys {
                guard let a = object[key] else { continue }
                // Some models write the arguments as a JSON string.
                if let s = a.stringValue, let parsed = try? JSONValue.parse(s, source: "arguments") { arguments = parsed } else { arguments = a }
                break
            }
            guard arguments.objectValue != nil else { return false }
            calls.append(ToolCall(id: format.makeCallID(), name: name, arguments: arguments.text))
            return true
        }
        func json(_ s: Substring) -> JSONValue? { try? JSONValue.parse(String(s), source: "tool call") }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        switch format {
        case .hermes:
            var content = ""
            var rest = Substring(text)
            while let open = rest.range(of: "<tool_call>") {
                content += rest[..<open.lowerBound]
                let after = rest[open.upperBound...]
                let close = after.range(of: "</tool_call>")
                let body = close.map { after[..<$0.lowerBound] } ?? after
                guard let value = json(body.trimmingCharacters(in: .whitespacesAndNewlines)[...]), call(value) else { return (text, []) }
                rest = close.map { after[$0.upperBound...] } ?? ""
            }
            content += rest
            return (calls.isEmpty ? text : content.trimmingCharacters(in: .whitespacesAndNewlines), calls)
        case .llama3:
            var body = Substring(trimmed)
            if body.hasPrefix("<|python_tag|>") { body = body.dropFirst("<|python_tag|>".count) }
            for piece in body.split(separator: ";") {
                guard let value = json(piece.drop { $0.isWhitespace }), call(value) else { return (text, []) }
            }
            return calls.isEmpty ? (text, []) : ("", calls)
        case .mistral, .generic:
            var body = Substring(trimmed)
            if body.hasPrefix("[TOOL_CALLS]") { body = body.dropFirst("[TOOL_CALLS]".count) }
            guard let value = json(body) else { return (text, []) }
            let list: [JSONValue]
            switch value {
            case .array(let items) where format == .mistral: list = items
            case .object(let o) where format == .generic:
                if let items = o["tool_calls"]?.arrayValue { list = items } else { list = [value] }
            default: return (text, [])
            }
            for item in list where !call(item) { return (text, []) }
            return calls.isEmpty ? (text, []) : ("", calls)
        }
    }
}

/// Streams an answer that may contain tool calls: text that cannot be part of a call goes out as it comes;
/// text that starts like a call is held back until the end, when it is parsed.
public struct ToolCallStream {
    public let format: ToolCallFormat
    public let tools: [ToolDefinition]
    /// Required or named calls: the whole answer is calls, nothing is streamed as text.
    private let forced: Bool
    private var text = ""
    private var sent = 0  // characters of `text` already given out as content
    private var holding = false

    public init(format: ToolCallFormat, use: ToolUse) {
        self.format = format
        tools = use.tools
        switch use.choice {
        case .required, .function: forced = true
        case .auto, .none: forced = false
        }
    }

    private var openings: [String] {
        switch format {
        case .hermes: ["<tool_call>"]
        case .llama3: ["{", "<|python_tag|>"]
        case .mistral: ["[TOOL_CALLS]", "["]
        case .generic: ["{"]
        }
    }

    /// Adds generated text; returns the content that can be sent now.
    public mutating func append(_ piece: String) -> String {
        text += piece
        if forced || holding { return "" }
        let unsent = text.dropFirst(sent)
        let start = sent == 0 ? unsent.drop(while: \.isWhitespace) : unsent
        if sent == 0 {
            // Nothing sent yet: a call may begin the answer.
            if openings.contains(where: { start.hasPrefix($0) }) {
                holding = true
                return ""
            }
            if start.isEmpty || openings.contains(where: { $0.hasPrefix(start) }) { return "" }
        }
        if format == .hermes {
            // A call may come after some text: hold back what could be the start of `<tool_call>`.
            if let open = unsent.range(of: "<tool_call>") {
                holding = true
                let out = String(unsent[..<open.lowerBound])
                sent += out.count
                return out
            }
            var keep = 0
            for length in stride(from: min("<tool_call>".count - 1, unsent.count), through: 1, by: -1)
            where "<tool_call>".hasPrefix(unsent.suffix(length)) {
                keep = length
                break
            }
            let out = String(unsent.dropLast(keep))
            sent += out.count
            return out
        }
        sent = text.count
        return String(unsent)
    }

    /// At the end: the content not sent yet, and the calls.
    public mutating func finish() -> (content: String, calls: [ToolCall]) {
        let parsed = ToolCallParser.parse(text, format: format, tools: tools)
        let unsent = String(text.dropFirst(sent))
        sent = text.count
        return parsed.calls.isEmpty ? (unsent, []) : ("", parsed.calls)
    }
}
