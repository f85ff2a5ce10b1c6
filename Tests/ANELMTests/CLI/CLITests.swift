import ANELM
import ANELMTestSupport
import Foundation
import XCTest

/// Runs the built `anelm` binary as a user would: bad input ends in one `error:` line and exit 1.
final class CLITests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func binary() throws -> URL {
        guard let built = builtANELMBinary() else { throw XCTSkip("anelm binary not built") }
        return built
    }

    func run(_ arguments: [String], input: String? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = try binary()
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        let inp = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = inp
        try process.run()
        inp.fileHandleForWriting.write(Data((input ?? "").utf8))
        try inp.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func assertCleanError(_ arguments: [String], contains expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try run(arguments)
        XCTAssertEqual(r.status, 1, "\(arguments): \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(expected), "\(arguments): expected '\(expected)' in stderr: \(r.stderr)", file: file, line: line)
        XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("Stack dump"), r.stderr, file: file, line: line)
    }

    func testBadInputGivesOneLineErrors() throws {
        let text = temporaryFile("not-a-model.gguf")
        try Data("hello, I am not a model".utf8).write(to: text)
        let model = defaultModelPath()
        try assertCleanError(["generate", "--model", "/nonexistent/model.gguf", "--prompt", "hi"], contains: "error: no model at")
        try assertCleanError(["info", text.path], contains: "error: ")
        try assertCleanError(["tokenize", "--model", text.path, "--text", "hi"], contains: "not a GGUF")
        try assertCleanError(["info", FileManager.default.temporaryDirectory.path], contains: "config.json")
        #if !canImport(CoreML)
            try assertCleanError(["generate", "--backend", "coreml", "--model", "x.mlpackage", "--prompt", "hi"], contains: "needs Core ML")
        #endif
        try assertCleanError(
            ["generate", "--backend", "coreml", "--model", "x.mlpackage", "--context", "64", "--prompt", "hi"], contains: "apply to --backend cpu")
        try assertCleanError(["generate", "--backend", "coreml", "--prompt", "hi"], contains: "--model")
        if let model {
            try assertCleanError(["generate", "--model", model, "--prompt", "hi", "--precision", "f8"], contains: "--precision")
            try assertCleanError(["generate", "--model", model, "--prompt", "hi", "--max-tokens=-3"], contains: "max-tokens")
            try assertCleanError(["generate", "--model", model, "--prompt", "hi", "--temperature=-1"], contains: "temperature")
            try assertCleanError(["generate", "--model", model, "--prompt", "hi", "--top-p", "1.5"], contains: "top")
            try assertCleanError(["generate", "--model", model, "--prompt", "hi", "--threads", "0"], contains: "threads")
            try assertCleanError(["generate", "--model", model, "--prompt", "", "--max-tokens", "2"], contains: "empty")
            try assertCleanError(["generate", "--model", model, "--prompt", "hi", "--system", "x"], contains: "--chat")
        }
    }

    /// `generate --format json --precision f32` gives the reference's greedy tokens end to end
    /// (tokenizer, model, sampler, CLI).
    func testGenerateJSONMatchesReference() throws {
        let fixture = try ModelFixture.load("smollm2-135m-instruct")
        let c = try XCTUnwrap(fixture.cases.first { $0.name == "short" })
        let r = try run([
            "generate", "--model", try fixture.modelPath(), "--prompt", c.text, "--max-tokens", "16", "--precision", "f32", "--ignore-eos", "--format", "json",
            "--temperature", "0",
        ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let last = try XCTUnwrap(r.stdout.split(separator: "\n").last)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
        XCTAssertEqual(object["prompt_tokens"] as? [Int], c.prompt_ids)
        XCTAssertEqual(object["tokens"] as? [Int], Array(c.greedy.ids.prefix(16)))
        XCTAssertNotNil(object["prefill_tps"] as? Double)
        XCTAssertNotNil(object["decode_tps"] as? Double)
    }

    /// `tokenize --text '<|im_end|>'` gives the control token; with `--no-parse-special`, the text's ordinary
    /// pieces (none special), which decode back to the text.
    func testTokenizeParseSpecialFlag() throws {
        guard let model = defaultModelPath() else { throw XCTSkip("default model not installed (scripts/test installs it)") }
        let tokenizer = try ModelLoader.loadText(model).tokenizer
        let imEnd = try XCTUnwrap(tokenizer.tokenId("<|im_end|>"))
        func ids(_ flags: [String]) throws -> [Int] {
            let r = try run(["tokenize", "--model", model, "--text", "<|im_end|>", "--format", "json"] + flags)
            XCTAssertEqual(r.status, 0, r.stderr)
            let last = try XCTUnwrap(r.stdout.split(separator: "\n").last)
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
            return try XCTUnwrap(object["ids"] as? [Int])
        }
        XCTAssertEqual(try ids([]), [imEnd])
        XCTAssertEqual(try ids(["--parse-special"]), [imEnd])
        let plain = try ids(["--no-parse-special"])
        XCTAssertGreaterThan(plain.count, 1)
        XCTAssertFalse(plain.contains(where: tokenizer.isSpecialToken))
        XCTAssertEqual(plain, tokenizer.encode("<|im_end|>", parseSpecialTokens: false))
        XCTAssertEqual(tokenizer.decode(plain), "<|im_end|>")
    }

    /// The chat REPL over a pipe: two turns, a reset, exit; every reply ends with a newline.
    func testChatREPL() throws {
        let folder = ModelFixture.directory.appendingPathComponent("tiny-llama").path
        let r = try run(["chat", "--model", folder, "--max-tokens", "6"], input: "hello there\nand again\n/reset\nhi\n/exit\n")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.components(separatedBy: "> ").count - 1, 5, r.stdout)  // one prompt per input line
        XCTAssertTrue(r.stderr.contains("(conversation reset)"), r.stderr)
    }

    func testUsageErrorsAreNotCrashes() throws {
        let r = try run(["generate", "--max-tokens", "many"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertFalse(r.stderr.contains("Fatal error"))
        let backend = try run(["generate", "--backend", "gpu", "--prompt", "hi"])
        XCTAssertNotEqual(backend.status, 0)
        XCTAssertTrue(backend.stderr.contains("'cpu' and 'coreml'"), backend.stderr)
        XCTAssertEqual(try run(["--help"]).status, 0)
    }

    /// A Gemma 3 model without a template chats with the built-in gemma3 one (tiny-gemma3 without its
    /// chat_template.jinja): the reference's chat prompt ids and greedy tokens, as with `--template gemma3`.
    func testBuiltinTemplateForModelWithoutOne() throws {
        let fixture = try ModelFixture.load("tiny-gemma3")
        let c = try XCTUnwrap(fixture.cases.first { $0.name == "chat" })
        let message = try XCTUnwrap(c.chat_messages?.first?.content)
        let folder = temporaryFile("tiny-gemma3-no-template")
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.copyItem(at: URL(fileURLWithPath: try fixture.modelPath()), to: folder)
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.removeItem(at: folder.appendingPathComponent("chat_template.jinja"))

        try assertCleanError(["generate", "--model", folder.path, "--chat", "--template", "nope", "--prompt", message], contains: "gemma3")
        try assertCleanError(["generate", "--model", folder.path, "--template", "gemma3", "--prompt", message], contains: "--chat")
        for template in [[], ["--template", "gemma3"]] {
            let r = try run(
                ["generate", "--model", folder.path, "--chat", "--prompt", message, "--max-tokens", "8"] + template + [
                    "--precision", "f32", "--ignore-eos", "--format", "json", "--temperature", "0",
                ])
            XCTAssertEqual(r.status, 0, r.stderr)
            let last = try XCTUnwrap(r.stdout.split(separator: "\n").last)
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
            XCTAssertEqual(object["prompt_tokens"] as? [Int], c.prompt_ids, "\(template)")
            XCTAssertEqual(object["tokens"] as? [Int], Array(c.greedy.ids.prefix(8)), "\(template)")
        }
    }

    /// The built-in templates are the committed fixtures, byte for byte.
    func testBuiltinTemplatesAreTheFixtures() throws {
        let files = [
            "gemma3": "Tests/Fixtures/chat_templates/templates/gemma-3-it.jinja",
            "gemma2": "Tests/Fixtures/chat_templates/templates/gemma-2-it.jinja",
            "chatml": "Tests/Fixtures/models/tiny-qwen2/chat_template.jinja",
        ]
        XCTAssertEqual(BuiltinChatTemplates.names, files.keys.sorted())
        for (name, path) in files {
            XCTAssertEqual(try BuiltinChatTemplates.named(name), try String(contentsOf: Self.root.appendingPathComponent(path), encoding: .utf8), name)
        }
        XCTAssertThrowsError(try BuiltinChatTemplates.named("nope"))
    }

    /// `info --ane` lowers both functions and prints one op table each.
    func testInfoANEReportsBothFunctions() throws {
        let tiny = ModelFixture.directory.appendingPathComponent("tiny-llama").path
        let r = try run(["info", tiny, "--ane"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("ANE decode graph (fp16, context 512, 1 token per call)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("ANE prefill graph (fp16, context 512, 64 tokens per call)"), r.stdout)
        let json = try run(["info", tiny, "--ane", "--format", "json"])
        XCTAssertTrue(json.stdout.contains("\"ane_prefill_ops\""), json.stdout)
        XCTAssertTrue(json.stdout.contains("\"ane_prefill_block\":64"), json.stdout)
    }
}
