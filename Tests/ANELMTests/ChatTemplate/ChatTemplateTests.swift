import ANELM
import Foundation
import XCTest

/// Checks the Jinja interpreter against `Tests/Fixtures/chat_templates/chat_template_fixtures.json`, which
/// `tools/reference/chat_template_fixtures.py` renders with transformers' own jinja2 environment.
final class ChatTemplateTests: XCTestCase {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/chat_templates")

    private static func loadFixture() throws -> JinjaValue {
        let text = try String(contentsOf: directory.appendingPathComponent("chat_template_fixtures.json"), encoding: .utf8)
        return try JinjaValue.fromJSON(text)
    }

    private func field(_ value: JinjaValue, _ key: String) -> JinjaValue? {
        guard case .object(let o) = value else { return nil }
        return o[key]
    }

    private func string(_ value: JinjaValue?) -> String? {
        if case .string(let s)? = value { return s }
        return nil
    }

    private func array(_ value: JinjaValue?) -> [JinjaValue] {
        if case .array(let a)? = value { return a }
        return []
    }

    private func variables(_ value: JinjaValue?) -> [String: JinjaValue] {
        guard case .object(let o)? = value else { return [:] }
        return Dictionary(o.pairs, uniquingKeysWith: { $1 })
    }

    func testRealTemplatesMatchTransformers() throws {
        let fixture = try Self.loadFixture()
        let conversations = try XCTUnwrap(field(fixture, "conversations"))
        let templates = array(field(fixture, "templates"))
        XCTAssertGreaterThanOrEqual(templates.count, 8)
        var checked = 0
        for entry in templates {
            let name = try XCTUnwrap(string(field(entry, "name")))
            let file = try XCTUnwrap(string(field(entry, "file")))
            let source = try String(contentsOf: Self.directory.appendingPathComponent("templates/" + file), encoding: .utf8)
            let template = try ChatTemplate(source)
            let bos = string(field(entry, "bos_token"))
            let eos = string(field(entry, "eos_token"))
            let extra = variables(field(entry, "extra"))
            for testCase in array(field(entry, "cases")) {
                let conversationName = try XCTUnwrap(string(field(testCase, "conversation")))
                let messages = try array(field(conversations, conversationName)).map { message in
                    ChatMessage(role: try XCTUnwrap(string(field(message, "role"))), content: try XCTUnwrap(string(field(message, "content"))))
                }
                let addGenerationPrompt = field(testCase, "add_generation_prompt") == .bool(true)
                let variant = string(field(testCase, "variant")) ?? "plain"
                let extra = extra.merging(variables(field(testCase, "variables")), uniquingKeysWith: { $1 })
                let label = "\(name) / \(conversationName) / \(variant) / add_generation_prompt=\(addGenerationPrompt)"
                if let expected = string(field(testCase, "output")) {
                    XCTAssertEqual(
                        try template.render(
                            messages: messages, addGenerationPrompt: addGenerationPrompt,
                            bosToken: bos, eosToken: eos, extra: extra), expected, label)
                } else {
                    let expectedError = try XCTUnwrap(string(field(testCase, "error")), label)
                    XCTAssertThrowsError(
                        try template.render(
                            messages: messages, addGenerationPrompt: addGenerationPrompt,
                            bosToken: bos, eosToken: eos, extra: extra), label
                    ) { error in
                        XCTAssertEqual((error as? ANELMError)?.message, expectedError, label)
                    }
                }
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 150)
    }

    func testInterpreterUnitCasesMatchJinja2() throws {
        let fixture = try Self.loadFixture()
        let units = array(field(fixture, "unit_cases"))
        XCTAssertGreaterThan(units.count, 50)
        for unit in units {
            let name = try XCTUnwrap(string(field(unit, "name")))
            let source = try XCTUnwrap(string(field(unit, "template")))
            let vars = variables(field(unit, "variables"))
            func render() throws -> String {
                try ChatTemplate(source).render(messages: [], addGenerationPrompt: false, bosToken: nil, eosToken: nil, extra: vars)
            }
            if let expected = string(field(unit, "output")) {
                XCTAssertEqual(try render(), expected, name)
            } else {
                let expectedError = try XCTUnwrap(string(field(unit, "error")), name)
                let kind = string(field(unit, "error_kind"))
                XCTAssertThrowsError(try render(), name) { error in
                    guard let error = error as? ANELMError else { return XCTFail("\(name): \(error) is not an ANELMError") }
                    if kind == "raise" {
                        XCTAssertEqual(error.message, expectedError, name)
                    } else {
                        XCTAssertFalse(error.message.isEmpty, name)
                    }
                    if kind == "compile" { XCTAssertTrue(error.message.contains(expectedError), "\(name): \(error.message)") }
                }
            }
        }
    }

    func testMalformedTemplatesThrowWithLine() throws {
        let fixture = try Self.loadFixture()
        let cases = array(field(fixture, "syntax_errors"))
        XCTAssertGreaterThanOrEqual(cases.count, 8)
        for syntaxCase in cases {
            let name = try XCTUnwrap(string(field(syntaxCase, "name")))
            let source = try XCTUnwrap(string(field(syntaxCase, "template")))
            XCTAssertThrowsError(try ChatTemplate(source).render(messages: [], addGenerationPrompt: false, bosToken: nil, eosToken: nil), name) { error in
                let message = (error as? ANELMError)?.message ?? ""
                XCTAssertTrue(message.contains("line "), "\(name): \(message)")
            }
        }
        XCTAssertThrowsError(try ChatTemplate("a\nb\n{% if x %}\n{{ 1 + }}\n{% endif %}")) { error in
            XCTAssertTrue((error as? ANELMError)?.message.contains("line 4") ?? false, "\(error)")
        }
    }

    func testRunawayTemplatesAreCapped() throws {
        let loop = try ChatTemplate("{% for a in range(1000000) %}{% for b in range(1000000) %}x{% endfor %}{% endfor %}")
        XCTAssertThrowsError(try loop.render(messages: [], addGenerationPrompt: false, bosToken: nil, eosToken: nil))
        let recursion = try ChatTemplate("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}")
        XCTAssertThrowsError(try recursion.render(messages: [], addGenerationPrompt: false, bosToken: nil, eosToken: nil))
    }

    func testDeepNestingThrowsInsteadOfOverflowingTheStack() {
        let deep = "{{ " + String(repeating: "(", count: 100_000) + "1" + String(repeating: ")", count: 100_000) + " }}"
        XCTAssertThrowsError(try ChatTemplate(deep))
        XCTAssertThrowsError(try ChatTemplate("{{ " + String(repeating: "not ", count: 100_000) + "x }}"))
        XCTAssertThrowsError(try ChatTemplate("{{ " + String(repeating: "- ", count: 100_000) + "1 }}"))
        XCTAssertThrowsError(try ChatTemplate(String(repeating: "{% if x %}", count: 100_000)))
        XCTAssertNoThrow(try ChatTemplate("{{ " + String(repeating: "(", count: 20) + "1" + String(repeating: ")", count: 20) + " }}"))
    }

    func testStrftimeNowRendersADate() throws {
        let template = try ChatTemplate("{{ strftime_now('%d %b %Y') }}")
        let text = try template.render(messages: [], addGenerationPrompt: false, bosToken: nil, eosToken: nil)
        XCTAssertNotNil(text.range(of: #"^\d{2} [A-Z][a-z]{2} \d{4}$"#, options: .regularExpression), text)
    }

    func testParseOnceRenderMany() throws {
        let source = try String(contentsOf: Self.directory.appendingPathComponent("templates/smollm2-instruct.jinja"), encoding: .utf8)
        let template = try ChatTemplate(source)
        let a = try template.render(messages: [ChatMessage(role: "user", content: "a")], addGenerationPrompt: true, bosToken: nil, eosToken: nil)
        let b = try template.render(messages: [ChatMessage(role: "user", content: "b")], addGenerationPrompt: true, bosToken: nil, eosToken: nil)
        XCTAssertNotEqual(a, b)
        XCTAssertEqual(a, try template.render(messages: [ChatMessage(role: "user", content: "a")], addGenerationPrompt: true, bosToken: nil, eosToken: nil))
    }

    /// Mutated real templates must parse-or-throw and render-or-throw, never trap or hang.
    func testMutatedTemplatesNeverCrash() throws {
        let folder = Self.directory.appendingPathComponent("templates")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".jinja") }.sorted()
        let pieces = [
            "{%", "%}", "{{", "}}", "{#", "#}", "-", "(", ")", "[", "]", "'", "\"", "|", ".", ":", "::-1", "9999999999",
            " if ", " else ", "endif", "endfor", " in ", "loop.", "ns.", ",", "=", "*", "/", "//", "%", "~", "\n", "{", "}",
        ]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(max(bound, 1)))
        }
        let messages = [
            ChatMessage(role: "system", content: "s"), ChatMessage(role: "user", content: "u"),
            ChatMessage(role: "assistant", content: "a"), ChatMessage(role: "user", content: "u2"),
        ]
        var rendered = 0
        for file in files {
            let source = Array(try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8).unicodeScalars)
            for _ in 0..<150 {
                var mutated = source
                for _ in 0..<(1 + next(3)) {
                    let position = next(mutated.count + 1)
                    switch next(3) {
                    case 0: if position < mutated.count { mutated.remove(at: position) }
                    case 1: mutated.insert(contentsOf: pieces[next(pieces.count)].unicodeScalars, at: position)
                    default:
                        let length = next(40)
                        if position + length <= mutated.count { mutated.removeSubrange(position..<(position + length)) }
                    }
                }
                var view = String.UnicodeScalarView()
                view.append(contentsOf: mutated)
                guard let template = try? ChatTemplate(String(view)) else { continue }
                if (try? template.render(messages: messages, addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")) != nil {
                    rendered += 1
                }
            }
        }
        XCTAssertGreaterThan(rendered, 0)
    }
}
