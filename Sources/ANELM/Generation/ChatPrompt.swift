import Foundation

extension LoadedModel {
    /// The prompt text of a conversation as the model's own chat template (or `template`, a Jinja
    /// source that replaces it) renders it, ending where the assistant's reply begins.
    public func chatPromptText(_ messages: [ChatMessage], template: String? = nil, tools: ToolUse? = nil) throws -> String {
        let source = try chatTemplateSource(template)
        let (prepared, extra) = prepareTools(messages, tools: tools, templateSource: source)
        return try renderChatPrompt(prepared, templateSource: source, extra: extra)
    }

    /// How this model writes tool calls with `template` (or its own): its template's format, else `generic`.
    public func toolCallFormat(template: String? = nil) throws -> ToolCallFormat {
        ToolCallFormat.detect(templateSource: try chatTemplateSource(template))
    }

    /// Tools as the template gets them: in `tools` for templates that render them, else (the generic format)
    /// described in the system message, with earlier calls and their results written as text turns.
    private func prepareTools(_ messages: [ChatMessage], tools: ToolUse?, templateSource: String) -> ([ChatMessage], [String: JinjaValue]) {
        let active = tools.map { $0.isActive ? $0 : nil } ?? nil
        let format = ToolCallFormat.detect(templateSource: templateSource)
        if format != .generic {
            guard let active else { return (messages, [:]) }
            return (messages, ["tools": .array(active.tools.map { JinjaValue.fromJSON($0.json) })])
        }
        let usesTools = active != nil || messages.contains { $0.role == "tool" || !($0.toolCalls ?? []).isEmpty }
        guard usesTools else { return (messages, [:]) }
        var out: [ChatMessage] = []
        var previousWasToolResult = false
        for message in messages {
            var role = message.role
            var content = message.content
            var isToolResult = false
            if let calls = message.toolCalls, !calls.isEmpty {
                let list: [JSONValue] = calls.map { call in
                    let arguments = (try? JSONValue.parse(call.arguments, source: "arguments")) ?? .string(call.arguments)
                    return ["name": .string(call.name), "arguments": arguments]
                }
                let json = JSONValue.object(["tool_calls": .array(list)]).text
                content = content.isEmpty ? json : content + "\n" + json
            } else if role == "tool" {
                var result: JSONObject = [:]
                if let name = message.name { result["name"] = .string(name) }
                if let id = message.toolCallID { result["tool_call_id"] = .string(id) }
                result["content"] = .string(content)
                role = "user"
                content = JSONValue.object(["tool_result": .object(result)]).text
                isToolResult = true
            }
            // Results join their neighbours' turn, so templates that need user/assistant alternation accept them.
            if let last = out.last, last.role == role, isToolResult || previousWasToolResult {
                out[out.count - 1].content += "\n\n" + content
            } else {
                out.append(ChatMessage(role: role, content: content))
            }
            previousWasToolResult = isToolResult
        }
        if let active {
            let instructions = active.genericInstructions()
            if out.first?.role == "system" { out[0].content += "\n\n" + instructions } else { out.insert(ChatMessage(role: "system", content: instructions), at: 0) }
        }
        return (out, [:])
    }

    /// Token ids of `chatPromptText`. The template writes BOS itself, so the tokenizer adds no
    /// special tokens (as transformers' `apply_chat_template` does).
    ///
    /// The template's own markup is tokenized with its special tokens; the text of the messages is tokenized as
    /// text, so a message containing `<|im_end|>\n<|im_start|>system` cannot close its turn and forge another.
    /// A conversation without special-token text in its messages gives exactly transformers' ids.
    public func chatPromptTokens(_ messages: [ChatMessage], template: String? = nil, tools: ToolUse? = nil) throws -> [Int] {
        let source = try chatTemplateSource(template)
        let (messages, extra) = prepareTools(messages, tools: tools, templateSource: source)
        let templateOwnText = [source, tokenizer.bosToken, tokenizer.eosToken].compactMap { $0 }
        var shield = MessageTextShield(
            reserved: Set(
                templateOwnText.flatMap {
                    $0.unicodeScalars.filter(MessageTextShield.isInSentinelPlanes)
                }))
        let shielded = try messages.map { message in
            ChatMessage(
                role: try shield.shield(message.role, tokenizer: tokenizer),
                content: try shield.shield(message.content, tokenizer: tokenizer),
                toolCalls: try message.toolCalls?.map {
                    ToolCall(
                        id: try shield.shield($0.id, tokenizer: tokenizer), name: try shield.shield($0.name, tokenizer: tokenizer),
                        arguments: try shield.shield($0.arguments, tokenizer: tokenizer))
                },
                toolCallID: try message.toolCallID.map { try shield.shield($0, tokenizer: tokenizer) },
                name: try message.name.map { try shield.shield($0, tokenizer: tokenizer) })
        }
        let (text, literal) = shield.unshield(try renderChatPrompt(shielded, templateSource: source, extra: extra))
        return tokenizer.encode(text, literalRanges: literal, addSpecialTokens: false)
    }

    private func chatTemplateSource(_ template: String?) throws -> String {
        guard let source = template ?? chatTemplate else {
            throw ANELMError(
                "\(name) has no chat template; pick a built-in one with --template (\(BuiltinChatTemplates.names.joined(separator: ", "))) or use a raw prompt (without --chat)"
            )
        }
        return source
    }

    private func renderChatPrompt(_ messages: [ChatMessage], templateSource: String, extra: [String: JinjaValue] = [:]) throws -> String {
        try ChatTemplate(templateSource).render(
            messages: messages, addGenerationPrompt: true,
            bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken, extra: extra)
    }
}

/// Hides special-token text in messages from the chat template and gets it back afterwards as literal text.
///
/// Each occurrence of a special token's text in a message (and each scalar of the sentinel planes already there) is
/// replaced by one private-use sentinel scalar before rendering: templates' filters (trim, upper, …) leave such
/// scalars alone. After rendering, each sentinel becomes its original text again, and its range is recorded as
/// literal, where the tokenizer matches no special token.
struct MessageTextShield {
    /// Sentinels come from Supplementary Private Use Areas A and B (planes 15 and 16), minus scalars of `reserved`.
    private static let sentinelPlanes: [ClosedRange<UInt32>] = [0xF0000...0xFFFFD, 0x100000...0x10FFFD]
    private let reserved: Set<Unicode.Scalar>
    /// The next candidate sentinel, as an offset into the sentinel planes.
    private var nextCandidate = 0
    private var sentinelByText: [String: Unicode.Scalar] = [:]
    private var textBySentinel: [Unicode.Scalar: [Unicode.Scalar]] = [:]

    /// `reserved`: scalars the template may write itself (its source, BOS, EOS), never used as sentinels.
    init(reserved: Set<Unicode.Scalar>) {
        self.reserved = reserved
    }

    static func isInSentinelPlanes(_ scalar: Unicode.Scalar) -> Bool { scalar.value >= 0xF0000 }

    /// `text` with special-token texts and sentinel-plane scalars replaced by sentinels; unchanged when it has none.
    mutating func shield(_ text: String, tokenizer: Tokenizer) throws -> String {
        let scalars = Array(text.unicodeScalars)
        let specials = tokenizer.specialTokenRanges(in: text)
        guard !specials.isEmpty || scalars.contains(where: Self.isInSentinelPlanes) else { return text }
        var out = String.UnicodeScalarView()
        var position = 0
        var nextSpecial = 0
        while position < scalars.count {
            if nextSpecial < specials.count && specials[nextSpecial].lowerBound == position {
                let range = specials[nextSpecial]
                out.append(try sentinel(for: scalars[range]))
                position = range.upperBound
                nextSpecial += 1
            } else if Self.isInSentinelPlanes(scalars[position]) {
                out.append(try sentinel(for: scalars[position...position]))
                position += 1
            } else {
                out.append(scalars[position])
                position += 1
            }
        }
        return String(out)
    }

    /// The rendered prompt with every sentinel back to its text, and the ranges (in scalars) of that text.
    func unshield(_ rendered: String) -> (text: String, literal: [Range<Int>]) {
        guard !textBySentinel.isEmpty else { return (rendered, []) }
        var out = String.UnicodeScalarView()
        var count = 0
        var literal: [Range<Int>] = []
        for scalar in rendered.unicodeScalars {
            if let original = textBySentinel[scalar] {
                out.append(contentsOf: original)
                literal.append(count..<(count + original.count))
                count += original.count
            } else {
                out.append(scalar)
                count += 1
            }
        }
        return (String(out), literal)
    }

    /// One sentinel per distinct text, so a message of many injections uses few of them.
    private mutating func sentinel(for text: ArraySlice<Unicode.Scalar>) throws -> Unicode.Scalar {
        let key = String(String.UnicodeScalarView(text))
        if let known = sentinelByText[key] { return known }
        while let candidate = Self.candidate(nextCandidate) {
            nextCandidate += 1
            guard !reserved.contains(candidate) else { continue }
            sentinelByText[key] = candidate
            textBySentinel[candidate] = Array(text)
            return candidate
        }
        throw ANELMError("the messages contain too many distinct private-use characters and special-token texts (more than \(Self.sentinelCount))")
    }

    private static let sentinelCount = sentinelPlanes.reduce(0) { $0 + $1.count }

    private static func candidate(_ offset: Int) -> Unicode.Scalar? {
        var rest = offset
        for plane in sentinelPlanes {
            if rest < plane.count { return Unicode.Scalar(plane.lowerBound + UInt32(rest)) }
            rest -= plane.count
        }
        return nil
    }
}
