import ANELM
import Foundation

/// A chat or text completion request, checked field by field (OpenAI's names, plus `top_k`,
/// `min_p` and `repetition_penalty` as extensions). Unknown fields are ignored, as OpenAI clients
/// send many optional ones; known fields that would change the output and are not supported are refused
/// (`unsupported`).
struct CompletionRequest: Sendable {
    enum Input: Sendable {
        case chat([ChatMessage])
        case text(String)
    }

    var input: Input
    var model: String?
    var maxTokens: Int?
    /// The sampling fields the request sets; the rest come from the model's defaults.
    var sampling: SamplingRequest
    /// Choices to generate (`n`), each its own job with its own seed.
    var choices: Int
    /// Log-probabilities: nil = none, else how many alternatives per token (chat `top_logprobs`, completions `logprobs`).
    var logprobs: Int?
    /// `tools`, `tool_choice`, `parallel_tool_calls`; nil without tools.
    var tools: ToolUse?
    var stop: [String]
    var stream: Bool
    var includeUsage: Bool
    /// Constrains the output: `response_format` (json_object, json_schema) or the `grammar` extension (GBNF).
    var grammar: Grammar?
    /// The `lora` extension (llama-server's): the adapters this request runs with and their scales; nil for the defaults.
    var lora: [(id: Int, scale: Float)]? = nil
    /// The `context` extension: answer from the server's context store (see ContextEndpoints.swift).
    var context: ContextOptions? = nil

    /// `"context": {"store": NAME, "top_k": K}`: `store` (optional) must name the served store, `top_k` in 1…50 (default 5).
    struct ContextOptions: Sendable {
        var store: String?
        var topK = 5

        static func parse(_ value: JSONValue?, chat: Bool) throws -> ContextOptions? {
            guard let value, !value.isNull else { return nil }
            guard chat else { throw APIError.invalid("'context' applies to chat completions", param: "context") }
            guard let object = value.objectValue else { throw APIError.wrongType("context", "an object") }
            for key in object.keys where key != "store" && key != "top_k" {
                throw APIError.invalid("unknown field 'context.\(key)'; context takes store and top_k", param: "context.\(key)")
            }
            let fields = Fields(object, prefix: "context.")
            var options = ContextOptions(store: try fields.string("store"))
            if let k = try fields.integer("top_k") {
                guard (1...50).contains(k) else { throw APIError.invalid("'context.top_k' must be between 1 and 50, got \(k)", param: "context.top_k") }
                options.topK = k
            }
            return options
        }
    }

    /// Roles the chat endpoint accepts; `developer` is OpenAI's newer name for `system`.
    static let roles: [String: String] = ["system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"]

    static func parse(_ data: Data, chat: Bool) throws -> CompletionRequest {
        let fields = try JSONObject.requestBody(data)
        let body = Fields(fields)

        let input: Input = chat ? .chat(try messages(body)) : .text(try prompt(body))
        let model = try body.string("model")
        var maxTokens = try body.integer("max_completion_tokens")
        if maxTokens == nil { maxTokens = try body.integer("max_tokens") }
        if let m = maxTokens, m < 1 {
            throw APIError.invalid("'max_tokens' must be ≥ 1, got \(m)", param: "max_tokens")
        }
        let choices = try body.integer("n") ?? 1
        guard (1...8).contains(choices) else { throw APIError.invalid("'n' must be between 1 and 8, got \(choices)", param: "n") }

        var sampling = SamplingRequest()
        if let t = try body.number("temperature") {
            guard t >= 0, t <= 2 else { throw APIError.invalid("'temperature' must be between 0 and 2, got \(t)", param: "temperature") }
            sampling.temperature = Float(t)
        }
        if let p = try body.number("top_p") {
            guard p > 0, p <= 1 else { throw APIError.invalid("'top_p' must be in (0, 1], got \(p)", param: "top_p") }
            sampling.topP = Float(p)
        }
        if let k = try body.integer("top_k") {
            guard k >= 0 else { throw APIError.invalid("'top_k' must be ≥ 0, got \(k)", param: "top_k") }
            sampling.topK = k
        }
        if let p = try body.number("min_p") {
            guard p >= 0, p <= 1 else { throw APIError.invalid("'min_p' must be in [0, 1], got \(p)", param: "min_p") }
            sampling.minP = Float(p)
        }
        if let r = try body.number("repetition_penalty") {
            guard r > 0, r <= 10 else { throw APIError.invalid("'repetition_penalty' must be in (0, 10], got \(r)", param: "repetition_penalty") }
            sampling.repetitionPenalty = Float(r)
        }
        for name in ["presence_penalty", "frequency_penalty"] {
            guard let v = try body.number(name) else { continue }
            guard v >= -2, v <= 2 else { throw APIError.invalid("'\(name)' must be between -2 and 2, got \(v)", param: name) }
            if name == "presence_penalty" { sampling.presencePenalty = Float(v) } else { sampling.frequencyPenalty = Float(v) }
        }
        if let bias = body.value("logit_bias") {
            guard let object = bias.objectValue else { throw APIError.wrongType("logit_bias", "an object of token ids to numbers") }
            for (key, value) in object {
                guard let id = Int(key), id >= 0, String(id) == key else {
                    throw APIError.invalid("'logit_bias' keys are token ids (integers ≥ 0), got '\(key)'", param: "logit_bias")
                }
                guard let v = value.numberValue, v >= -100, v <= 100 else {
                    throw APIError.invalid("'logit_bias' values must be numbers between -100 and 100 (token \(key))", param: "logit_bias")
                }
                sampling.logitBias[id] = Float(v)
            }
        }
        if let seed = try body.integer("seed") { sampling.seed = UInt64(bitPattern: Int64(seed)) }

        let logprobs: Int?
        if chat {
            let wanted = try body.bool("logprobs") ?? false
            let top = try body.integer("top_logprobs")
            if let top {
                guard (0...20).contains(top) else { throw APIError.invalid("'top_logprobs' must be between 0 and 20, got \(top)", param: "top_logprobs") }
                guard wanted else { throw APIError.invalid("'top_logprobs' needs 'logprobs': true", param: "top_logprobs") }
            }
            logprobs = wanted ? (top ?? 0) : nil
        } else {
            logprobs = try body.integer("logprobs")
            if let n = logprobs, !(0...20).contains(n) { throw APIError.invalid("'logprobs' must be between 0 and 20, got \(n)", param: "logprobs") }
        }

        let stop: [String]
        switch body.value("stop") {
        case nil: stop = []
        case .string(let s)?: stop = [s]
        case .array(let items)?:
            stop = try items.map { item in
                guard let s = item.stringValue else { throw APIError.wrongType("stop", "a string or an array of strings") }
                return s
            }
            guard stop.count <= 16 else { throw APIError.invalid("'stop' takes at most 16 strings", param: "stop") }
        default: throw APIError.wrongType("stop", "a string or an array of strings")
        }

        let stream = try body.bool("stream") ?? false
        var includeUsage = false
        if let options = body.value("stream_options") {
            guard let o = options.objectValue else { throw APIError.wrongType("stream_options", "an object") }
            includeUsage = try Fields(o, prefix: "stream_options.").bool("include_usage") ?? false
        }
        try refuseUnsupported(body)
        let tools = try toolUse(body)
        if tools != nil, !chat { throw APIError.invalid("'tools' needs /v1/chat/completions", param: "tools") }
        let grammar = try grammar(body)
        if let tools, tools.isActive, grammar != nil, tools.choice != .auto {
            throw APIError.invalid("give either 'response_format'/'grammar' or a required/named 'tool_choice', not both", param: "tool_choice")
        }
        return CompletionRequest(
            input: input, model: model, maxTokens: maxTokens, sampling: sampling, choices: choices, logprobs: logprobs, tools: tools,
            stop: stop.filter { !$0.isEmpty }, stream: stream, includeUsage: includeUsage, grammar: grammar,
            lora: try body.value("lora").map { try parseLoRAList($0, param: "lora") },
            context: try ContextOptions.parse(body.value("context"), chat: chat))
    }

    /// `response_format` or `grammar`, compiled; a schema keyword the compiler does not support is a 400 naming it.
    private static func grammar(_ body: Fields) throws -> Grammar? {
        let format = body.value("response_format")
        let gbnf = try body.string("grammar")
        guard format == nil || gbnf == nil else {
            throw APIError.invalid("give either 'response_format' or 'grammar', not both", param: "grammar")
        }
        if let gbnf {
            do { return try Grammar(gbnf: gbnf) } catch let e as ANELMError { throw APIError.invalid("'grammar': \(e.message)", param: "grammar") }
        }
        guard let format else { return nil }
        guard let object = format.objectValue else { throw APIError.wrongType("response_format", "an object") }
        let fields = Fields(object, prefix: "response_format.")
        switch try fields.string("type") {
        case "text"?: return nil
        case "json_object"?: return Grammar.jsonObject
        case "json_schema"?:
            guard let spec = fields.value("json_schema")?.objectValue else { throw APIError.wrongType("response_format.json_schema", "an object") }
            let specFields = Fields(spec, prefix: "response_format.json_schema.")
            _ = try specFields.string("name")
            _ = try specFields.bool("strict")  // the output always follows the schema; strict or not
            guard let schema = specFields.value("schema") else {
                throw APIError.invalid(
                    "'response_format.json_schema.schema' is required", param: "response_format.json_schema.schema",
                    code: "missing_required_parameter")
            }
            do {
                return try Grammar(jsonSchema: schema)
            } catch let e as ANELMError {
                throw APIError.invalid("'response_format.json_schema.schema': \(e.message)", param: "response_format.json_schema.schema")
            }
        default:
            throw APIError.invalid("'response_format.type' must be text, json_object or json_schema", param: "response_format.type")
        }
    }

    /// Fields OpenAI defines that would change the output and that this server does not implement yet: refused
    /// by name rather than ignored (a client that sends tools must not get free text that looks like success).
    private static func refuseUnsupported(_ body: Fields) throws {
        func refuse(_ name: String) throws -> Never {
            throw APIError.invalid("'\(name)' is not supported by this server yet", param: name, code: "unsupported_parameter")
        }
        if let value = body.value("functions"), value.arrayValue?.isEmpty != true { try refuse("functions") }
        if let call = body.value("function_call"), call.stringValue != "none" { try refuse("function_call") }
        if try (body.integer("best_of") ?? 1) != 1 { try refuse("best_of") }
        if try body.bool("echo") == true { try refuse("echo") }
        if try body.string("suffix") != nil { try refuse("suffix") }
    }

    private static func messages(_ body: Fields) throws -> [ChatMessage] {
        guard let value = body.value("messages") else {
            throw APIError.invalid("'messages' is required", param: "messages", code: "missing_required_parameter")
        }
        guard let items = value.arrayValue else { throw APIError.wrongType("messages", "an array") }
        guard !items.isEmpty else { throw APIError.invalid("'messages' must not be empty", param: "messages") }
        return try items.enumerated().map { index, item in
            let param = "messages[\(index)]"
            guard let object = item.objectValue else { throw APIError.wrongType(param, "an object") }
            guard let role = object["role"]?.stringValue else { throw APIError.wrongType("\(param).role", "a string") }
            guard let mapped = roles[role] else {
                throw APIError.invalid("unknown role '\(role)' in \(param): use system, user, assistant or tool", param: "\(param).role")
            }
            let fields = Fields(object, prefix: "\(param).")
            var calls: [ToolCall]?
            if mapped == "assistant", let value = fields.value("tool_calls") {
                calls = try toolCalls(value, param: "\(param).tool_calls")
            }
            // An assistant turn that only calls tools has no content.
            let text = calls?.isEmpty == false && fields.value("content") == nil ? "" : try content(object["content"], param: "\(param).content")
            var callID: String?
            if mapped == "tool" {
                guard let id = try fields.string("tool_call_id") else {
                    throw APIError.invalid("'\(param).tool_call_id' is required for tool messages", param: "\(param).tool_call_id", code: "missing_required_parameter")
                }
                callID = id
            }
            return ChatMessage(role: mapped, content: text, toolCalls: calls, toolCallID: callID, name: try fields.string("name"))
        }
    }

    /// An assistant message's `tool_calls`: `[{"id", "type": "function", "function": {"name", "arguments"}}]`.
    private static func toolCalls(_ value: JSONValue, param: String) throws -> [ToolCall] {
        guard let items = value.arrayValue else { throw APIError.wrongType(param, "an array") }
        return try items.enumerated().map { index, item in
            let p = "\(param)[\(index)]"
            guard let object = item.objectValue else { throw APIError.wrongType(p, "an object") }
            let fields = Fields(object, prefix: p + ".")
            guard let function = fields.value("function")?.objectValue else { throw APIError.wrongType(p + ".function", "an object") }
            let f = Fields(function, prefix: p + ".function.")
            guard let name = try f.string("name") else { throw APIError.wrongType(p + ".function.name", "a string") }
            let arguments: String
            switch f.value("arguments") {
            case .string(let s)?: arguments = s
            case .object(let o)?: arguments = JSONValue.object(o).text
            case nil: arguments = "{}"
            default: throw APIError.wrongType(p + ".function.arguments", "a string of JSON")
            }
            return ToolCall(id: try fields.string("id") ?? "call_\(index)", name: name, arguments: arguments)
        }
    }

    /// `tools`, `tool_choice` and `parallel_tool_calls`.
    private static func toolUse(_ body: Fields) throws -> ToolUse? {
        let choiceValue = body.value("tool_choice")
        let parallel = try body.bool("parallel_tool_calls") ?? true
        guard let toolsValue = body.value("tools") else {
            if let choiceValue, choiceValue.stringValue != "none", choiceValue.stringValue != "auto" {
                throw APIError.invalid("'tool_choice' needs 'tools'", param: "tool_choice")
            }
            return nil
        }
        guard let items = toolsValue.arrayValue else { throw APIError.wrongType("tools", "an array") }
        var names: Set<String> = []
        let tools: [ToolDefinition] = try items.enumerated().map { index, item in
            let p = "tools[\(index)]"
            guard let object = item.objectValue else { throw APIError.wrongType(p, "an object") }
            let fields = Fields(object, prefix: p + ".")
            guard try fields.string("type") == "function" else { throw APIError.invalid("'\(p).type' must be 'function'", param: "\(p).type") }
            guard let function = fields.value("function")?.objectValue else { throw APIError.wrongType(p + ".function", "an object") }
            let f = Fields(function, prefix: p + ".function.")
            guard let name = try f.string("name"), !name.isEmpty, name.count <= 64 else {
                throw APIError.invalid("'\(p).function.name' must be a string of 1 to 64 characters", param: "\(p).function.name")
            }
            guard names.insert(name).inserted else { throw APIError.invalid("two tools are named '\(name)'", param: "\(p).function.name") }
            let parameters = f.value("parameters")
            if let parameters, parameters.objectValue == nil { throw APIError.wrongType(p + ".function.parameters", "an object (a JSON schema)") }
            _ = try f.bool("strict")  // arguments always follow the schema when the grammar forces the call
            return ToolDefinition(name: name, description: try f.string("description"), parameters: parameters)
        }
        let choice: ToolChoice
        switch choiceValue {
        case nil: choice = .auto
        case .string("auto")?: choice = .auto
        case .string("none")?: choice = .none
        case .string("required")?: choice = .required
        case .object(let o)?:
            guard o["type"]?.stringValue == "function", let name = o["function"]?["name"]?.stringValue else {
                throw APIError.invalid("'tool_choice' must be auto, none, required or {\"type\": \"function\", \"function\": {\"name\": …}}", param: "tool_choice")
            }
            guard names.contains(name) else { throw APIError.invalid("'tool_choice' names '\(name)', which is not among the tools", param: "tool_choice") }
            choice = .function(name)
        default:
            throw APIError.invalid("'tool_choice' must be auto, none, required or {\"type\": \"function\", \"function\": {\"name\": …}}", param: "tool_choice")
        }
        if tools.isEmpty, choice != .none, choice != .auto { throw APIError.invalid("'tool_choice' needs 'tools'", param: "tool_choice") }
        return ToolUse(tools: tools, choice: choice, parallel: parallel)
    }

    /// A message's text: a string, or an array of `{"type": "text", "text": ...}` parts.
    private static func content(_ value: JSONValue?, param: String) throws -> String {
        switch value {
        case .string(let s)?: return s
        case .array(let parts)?:
            return try parts.map { part in
                guard let o = part.objectValue, o["type"]?.stringValue == "text", let text = o["text"]?.stringValue else {
                    throw APIError.invalid("only text content parts are supported in \(param)", param: param)
                }
                return text
            }.joined()
        default: throw APIError.wrongType(param, "a string or an array of text parts")
        }
    }

    private static func prompt(_ body: Fields) throws -> String {
        switch body.value("prompt") {
        case nil: throw APIError.invalid("'prompt' is required", param: "prompt", code: "missing_required_parameter")
        case .string(let s)?: return s
        case .array(let items)? where items.count == 1:
            guard let s = items[0].stringValue else { throw APIError.wrongType("prompt", "a string") }
            return s
        case .array?: throw APIError.invalid("'prompt' must be one string (batches are not supported)", param: "prompt")
        default: throw APIError.wrongType("prompt", "a string")
        }
    }
}

/// Typed access to a request's fields; JSON null counts as absent.
private struct Fields {
    let fields: JSONObject
    var prefix = ""

    init(_ fields: JSONObject, prefix: String = "") {
        self.fields = fields
        self.prefix = prefix
    }

    func value(_ key: String) -> JSONValue? {
        guard let v = fields[key], !v.isNull else { return nil }
        return v
    }

    func string(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.stringValue else { throw APIError.wrongType(prefix + key, "a string") }
        return s
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v.boolValue else { throw APIError.wrongType(prefix + key, "a boolean") }
        return b
    }

    func number(_ key: String) throws -> Double? {
        guard let v = value(key) else { return nil }
        guard let d = v.numberValue, d.isFinite else { throw APIError.wrongType(prefix + key, "a number") }
        return d
    }

    func integer(_ key: String) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = v.integerValue else { throw APIError.wrongType(prefix + key, "an integer") }
        return i
    }
}

/// The sampling fields a request sets; `resolve` fills the others from the model's defaults.
struct SamplingRequest: Sendable {
    var temperature: Float?
    var topK: Int?
    var topP: Float?
    var minP: Float?
    var repetitionPenalty: Float?
    var presencePenalty: Float = 0
    var frequencyPenalty: Float = 0
    var logitBias: [Int: Float] = [:]
    var seed: UInt64?

    func resolve(defaults: SamplingParameters) -> SamplingParameters {
        var p = defaults
        if let temperature { p.temperature = temperature }
        if let topK { p.topK = topK }
        if let topP { p.topP = topP }
        if let minP { p.minP = minP }
        if let repetitionPenalty { p.repetitionPenalty = repetitionPenalty } else if p.temperature == 0 { p.repetitionPenalty = 1 }  // exact greedy
        p.presencePenalty = presencePenalty
        p.frequencyPenalty = frequencyPenalty
        p.logitBias = logitBias
        if let seed { p.seed = seed }
        return p
    }
}
