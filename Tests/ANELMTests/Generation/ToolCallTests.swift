import ANELM
import XCTest

/// Tool calls: templates rendering tools and earlier calls as transformers does (`tool_call_fixtures.json`,
/// from tools/reference/chat_template_fixtures.py), each family's format detected and parsed back, the grammar
/// of required / named calls, the generic format, and streaming.
final class ToolCallTests: XCTestCase {
    static let directory = ChatTemplateTests.directory

    let weather = ToolDefinition(
        name: "get_weather", description: "Current weather",
        parameters: [
            "type": "object", "additionalProperties": false, "required": ["city"],
            "properties": ["city": ["type": "string", "maxLength": 20], "days": ["type": "integer", "minimum": 1, "maximum": 7]],
        ])
    let time = ToolDefinition(name: "get_time", parameters: ["type": "object", "properties": ["zone": ["type": "string"]], "required": ["zone"]])

    func template(_ name: String) throws -> String {
        try String(contentsOf: Self.directory.appendingPathComponent("templates/\(name).jinja"), encoding: .utf8)
    }

    func testTemplatesRenderToolConversationsAsTransformers() throws {
        let data = try Data(contentsOf: Self.directory.appendingPathComponent("tool_call_fixtures.json"))
        let fixture = try JSONValue.parse(data, source: "tool_call_fixtures.json")
        let tools = try XCTUnwrap(fixture["tools"])
        let conversations = try XCTUnwrap(fixture["conversations"])
        var checked = 0
        for testCase in try XCTUnwrap(fixture["cases"]?.arrayValue) {
            let name = try XCTUnwrap(testCase["template"]?.stringValue)
            let conversation = try XCTUnwrap(testCase["conversation"]?.stringValue)
            let messages = try XCTUnwrap(conversations[conversation]?.arrayValue).map { m -> ChatMessage in
                let calls = m["tool_calls"]?.arrayValue?.map { call in
                    ToolCall(
                        id: call["id"]?.stringValue ?? "", name: call["function"]?["name"]?.stringValue ?? "",
                        arguments: call["function"]?["arguments"]?.stringValue ?? "")
                }
                return ChatMessage(
                    role: m["role"]?.stringValue ?? "", content: m["content"]?.stringValue ?? "", toolCalls: calls,
                    toolCallID: m["tool_call_id"]?.stringValue, name: m["name"]?.stringValue)
            }
            var extra: [String: JinjaValue] = ["tools": JinjaValue.fromJSON(tools)]
            for (key, value) in testCase["extra"]?.objectValue ?? [:] { extra[key] = JinjaValue.fromJSON(value) }
            let render = {
                try ChatTemplate(try self.template(name)).render(
                    messages: messages, addGenerationPrompt: true, bosToken: testCase["bos_token"]?.stringValue,
                    eosToken: testCase["eos_token"]?.stringValue, extra: extra)
            }
            let label = "\(name) / \(conversation)"
            if let expected = testCase["output"]?.stringValue {
                XCTAssertEqual(try render(), expected, label)
            } else {
                XCTAssertThrowsError(try render(), label) { error in
                    XCTAssertEqual((error as? ANELMError)?.message, testCase["error"]?.stringValue, label)
                }
            }
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 12)
    }

    func testFormatDetectedPerTemplateFamily() throws {
        let expected: [String: ToolCallFormat] = [
            "qwen2.5-instruct": .hermes, "qwen3": .hermes, "llama-3.1-instruct": .llama3, "llama-3.2-instruct": .llama3,
            "mistral-7b-instruct-v0.3": .mistral, "mistral-nemo-instruct-2407": .mistral, "smollm2-instruct": .generic,
            "gemma-3-it": .generic, "gemma-2-it": .generic, "phi-3.5-mini-instruct": .generic,
        ]
        for (name, format) in expected { XCTAssertEqual(ToolCallFormat.detect(templateSource: try template(name)), format, name) }
    }

    /// What each family's model writes, parsed into calls; text around Hermes blocks stays content.
    func testModelOutputIsParsedPerFamily() {
        let tools = [weather, time]
        let cases: [(ToolCallFormat, String, [String], String)] = [
            (.hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", ["get_weather"], ""),
            (
                .hermes, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n"
                    + "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\"}}\n</tool_call>", ["get_weather", "get_time"], "Let me check."
            ),
            (.llama3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", ["get_weather"], ""),
            (.llama3, "<|python_tag|>{\"name\": \"get_time\", \"parameters\": {\"zone\": \"UTC\"}}", ["get_time"], ""),
            (.mistral, "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]", ["get_weather"], ""),
            (.mistral, " [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}, {\"name\": \"get_time\", \"arguments\": {\"zone\": \"X\"}}]",
             ["get_weather", "get_time"], ""),
            (.generic, "{\"tool_calls\": [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}]}", ["get_weather"], ""),
        ]
        for (format, output, names, content) in cases {
            let parsed = ToolCallParser.parse(output, format: format, tools: tools)
            XCTAssertEqual(parsed.calls.map(\.name), names, output)
            XCTAssertEqual(parsed.content, content, output)
            for call in parsed.calls {
                XCTAssertNotNil(try? JSONValue.parse(call.arguments, source: "arguments").objectValue, call.arguments)
                XCTAssertEqual(call.id.count, format == .mistral ? 9 : 29)
            }
        }
        XCTAssertEqual(ToolCallParser.parse(#"{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Lima"}}]}"#, format: .generic, tools: tools)
            .calls.first?.arguments, #"{"city":"Lima"}"#)
        // Not calls: plain text, unknown functions, arguments that are not an object.
        for (format, text) in [
            (ToolCallFormat.generic, "The weather is fine."), (.generic, #"{"tool_calls": [{"name": "nope", "arguments": {}}]}"#),
            (.llama3, #"{"name": "get_weather", "parameters": 3}"#), (.hermes, "<tool_call>\nnot json\n</tool_call>"),
        ] {
            let parsed = ToolCallParser.parse(text, format: format, tools: tools)
            XCTAssertTrue(parsed.calls.isEmpty, text)
            XCTAssertEqual(parsed.content, text)
        }
    }

    /// The calls a template renders for an earlier turn are the text the parser reads back (round trip).
    func testRenderedCallsParseBack() throws {
        let call = ToolCall(id: "call0abcd", name: "get_weather", arguments: #"{"city": "Paris"}"#)
        let tools = JinjaValue.array([JinjaValue.fromJSON(weather.json)])
        for (name, format, opening) in [
            ("qwen2.5-instruct", ToolCallFormat.hermes, "<|im_start|>assistant\n"), ("mistral-nemo-instruct-2407", .mistral, "[/INST]"),
        ] {
            let rendered = try ChatTemplate(try template(name)).render(
                messages: [ChatMessage(role: "user", content: "Weather?"), ChatMessage(role: "assistant", content: "", toolCalls: [call])],
                addGenerationPrompt: false, bosToken: "<s>", eosToken: name.hasPrefix("qwen") ? "<|im_end|>" : "</s>", extra: ["tools": tools])
            let turn = try XCTUnwrap(rendered.components(separatedBy: opening).last, name)
            let end = turn.range(of: name.hasPrefix("qwen") ? "<|im_end|>" : "</s>")?.lowerBound ?? turn.endIndex
            let parsed = ToolCallParser.parse(String(turn[..<end]), format: format, tools: [weather])
            XCTAssertEqual(parsed.calls.map(\.name), ["get_weather"], "\(name): \(turn)")
            XCTAssertEqual(parsed.calls.first?.arguments, #"{"city":"Paris"}"#, name)
        }
    }

    func testRequiredAndNamedGrammarsOnlyAllowValidCalls() throws {
        let use = ToolUse(tools: [weather, time], choice: .required)
        let named = ToolUse(tools: [weather, time], choice: .function("get_time"))
        XCTAssertNil(try ToolUse(tools: [weather], choice: .auto).grammar(format: .generic))
        for format in ToolCallFormat.allCases {
            let required = try XCTUnwrap(try use.grammar(format: format))
            let call = { (name: String, arguments: String) -> String in
                switch format {
                case .hermes: "<tool_call>\n{\"name\": \"\(name)\", \"arguments\": \(arguments)}\n</tool_call>"
                case .llama3: "{\"name\": \"\(name)\", \"parameters\": \(arguments)}"
                case .mistral: "[{\"name\": \"\(name)\", \"arguments\": \(arguments)}]"
                case .generic: "{\"tool_calls\": [{\"name\": \"\(name)\", \"arguments\": \(arguments)}]}"
                }
            }
            XCTAssertTrue(required.matches(call("get_weather", #"{"city":"Paris","days":3}"#)), "\(format)")
            XCTAssertTrue(required.matches(call("get_time", #"{"zone":"UTC"}"#)), "\(format)")
            XCTAssertFalse(required.matches(call("get_weather", #"{"days":3}"#)), "\(format): city is required")
            XCTAssertFalse(required.matches(call("get_weather", #"{"city":"Paris","days":9}"#)), "\(format): days ≤ 7")
            XCTAssertFalse(required.matches(call("launch", #"{}"#)), "\(format): unknown function")
            XCTAssertFalse(required.matches("Sure, here is the weather"), "\(format)")
            let only = try XCTUnwrap(try named.grammar(format: format))
            XCTAssertTrue(only.matches(call("get_time", #"{"zone":"UTC"}"#)), "\(format)")
            XCTAssertFalse(only.matches(call("get_weather", #"{"city":"Paris"}"#)), "\(format)")
            // What the grammar allows, the parser reads back as the call.
            let parsed = ToolCallParser.parse(call("get_time", #"{"zone":"UTC"}"#), format: format, tools: [weather, time])
            XCTAssertEqual(parsed.calls.map(\.name), ["get_time"], "\(format)")
        }
        let bad = ToolUse(tools: [ToolDefinition(name: "f", parameters: ["type": "object", "not": ["type": "string"]])], choice: .required)
        XCTAssertThrowsError(try bad.grammar(format: .generic)) { error in
            XCTAssertTrue((error as? ANELMError)?.message.contains("'f'") ?? false, "\(error)")
        }
    }

    /// For templates without tool support, the tools go into the system message and earlier calls and results
    /// become text turns that keep user/assistant alternation (Gemma 3's template raises otherwise).
    func testGenericFormatRendersThroughTemplatesWithoutToolSupport() throws {
        let loaded = try ModelLoader.load(ModelFixture.directory.appendingPathComponent("tiny-gemma3").path)
        let use = ToolUse(tools: [weather], choice: .auto)
        let messages = [
            ChatMessage(role: "user", content: "Weather in Paris?"),
            ChatMessage(role: "assistant", content: "", toolCalls: [ToolCall(id: "call_1", name: "get_weather", arguments: #"{"city": "Paris"}"#)]),
            ChatMessage(role: "tool", content: "sunny", toolCallID: "call_1", name: "get_weather"),
        ]
        let template = try BuiltinChatTemplates.named("gemma3")
        XCTAssertEqual(try loaded.toolCallFormat(template: template), .generic)
        let text = try loaded.chatPromptText(messages, template: template, tools: use)
        XCTAssertTrue(text.contains("<start_of_turn>user\nYou can call these functions"), text)
        XCTAssertTrue(text.contains(#"{"type":"function","function":{"name":"get_weather""#), text)
        XCTAssertTrue(text.contains("<start_of_turn>model\n{\"tool_calls\":[{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}]}<end_of_turn>"), text)
        XCTAssertTrue(
            text.hasSuffix(
                "<start_of_turn>user\n{\"tool_result\":{\"name\":\"get_weather\",\"tool_call_id\":\"call_1\",\"content\":\"sunny\"}}<end_of_turn>\n<start_of_turn>model\n"),
            text)
        // tool_choice none: no tools shown.
        let none = try loaded.chatPromptText([messages[0]], template: template, tools: ToolUse(tools: [weather], choice: .none))
        XCTAssertFalse(none.contains("get_weather"), none)
    }

    func testStreamHoldsBackOnlyWhatMayBeACall() {
        var plain = ToolCallStream(format: .generic, use: ToolUse(tools: [weather]))
        XCTAssertEqual(plain.append("  "), "")
        XCTAssertEqual(plain.append("The"), "  The")
        XCTAssertEqual(plain.append(" sky"), " sky")
        XCTAssertEqual(plain.finish().calls, [])

        var call = ToolCallStream(format: .generic, use: ToolUse(tools: [weather]))
        var sent = ""
        for piece in [#"{"tool"#, #"_calls": [{"name": "get_weather", "#, #""arguments": {"city": "Oslo"}}]}"#] { sent += call.append(piece) }
        XCTAssertEqual(sent, "")
        let end = call.finish()
        XCTAssertEqual(end.content, "")
        XCTAssertEqual(end.calls.map(\.name), ["get_weather"])

        var hermes = ToolCallStream(format: .hermes, use: ToolUse(tools: [weather]))
        sent = ""
        for piece in ["Checking", " now.<tool", "_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"] {
            sent += hermes.append(piece)
        }
        XCTAssertEqual(sent, "Checking now.")
        XCTAssertEqual(hermes.finish().calls.map(\.name), ["get_weather"])

        // Text that looked like a call but is not one comes out at the end.
        var notCall = ToolCallStream(format: .generic, use: ToolUse(tools: [weather]))
        XCTAssertEqual(notCall.append("{braces} are fun"), "")
        XCTAssertEqual(notCall.finish().content, "{braces} are fun")
    }
}
