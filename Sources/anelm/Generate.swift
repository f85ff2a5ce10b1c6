import ANELM
import ArgumentParser
import Foundation

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate a continuation of a prompt, streamed to stdout.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions
    @Option(name: .long, help: "The prompt: raw text, or the user message with --chat.") var prompt: String
    @Flag(name: .long, help: "Wrap the prompt in the model's chat template.") var chat = false
    @Flag(name: .long, help: "Do not add the tokenizer's BOS/EOS to a raw prompt (one that already holds them).") var noSpecialTokens = false
    @Option(name: .long, help: "System message (with --chat).") var system: String?
    @Option(name: .long, help: "text, or json (one object on the last line).") var format: OutputFormat = .text
    @OptionGroup var templateOption: TemplateOption
    @OptionGroup var grammarOptions: GrammarOptions

    func run() throws {
        let template = try templateOption.source()
        guard chat || template == nil else { throw ANELMError("--template needs --chat") }
        let loaded = try modelOptions.load()
        let promptTokens: [Int]
        if chat {
            var messages: [ChatMessage] = []
            if let system { messages.append(ChatMessage(role: "system", content: system)) }
            messages.append(ChatMessage(role: "user", content: prompt))
            promptTokens = try loaded.chatPromptTokens(messages, template: template)
        } else {
            guard system == nil else { throw ANELMError("--system needs --chat") }
            promptTokens = loaded.tokenizer.encode(prompt, addSpecialTokens: !noSpecialTokens)
        }
        var parameters = try sampling.parameters(for: loaded)
        parameters.grammar = try grammarOptions.makeGrammar()
        let session = loaded.makeSession()
        let result = try session.generate(prompt: promptTokens, parameters: parameters) { chunk in
            if format == .text, !chunk.text.isEmpty { FileHandle.standardOutput.write(Data(chunk.text.utf8)) }
            return true
        }
        switch format {
        case .text:
            FileHandle.standardOutput.write(Data("\n".utf8))
            printError(
                "prefill: \(result.prefilledTokens) tokens, \(oneDecimal(result.prefillTokensPerSecond)) t/s | "
                    + "decode: \(result.tokens.count) tokens, \(oneDecimal(result.decodeTokensPerSecond)) t/s | finish: \(result.finishReason.rawValue)")
        case .json:
            try writeJSONLine([
                "prompt_tokens": result.promptTokens, "tokens": result.tokens, "text": result.text,
                "prefill_tps": result.prefillTokensPerSecond, "decode_tps": result.decodeTokensPerSecond,
                "finish_reason": result.finishReason.rawValue,
            ])
        }
    }
}

/// `--grammar FILE` (GBNF) or `--json-schema FILE`: constrain the output.
struct GrammarOptions: ParsableArguments {
    @Option(name: .long, help: "Constrain the output to a GBNF grammar (llama.cpp syntax, start rule 'root') read from this file.")
    var grammar: String?
    @Option(name: .long, help: "Constrain the output to JSON valid against the JSON schema in this file.")
    var jsonSchema: String?

    /// The grammar the flags ask for, or nil.
    func makeGrammar() throws -> Grammar? {
        switch (grammar, jsonSchema) {
        case (nil, nil): return nil
        case (let path?, nil): return try Grammar(gbnf: String(decoding: try read(path), as: UTF8.self))
        case (nil, let path?): return try Grammar(jsonSchema: try read(path))
        default: throw ANELMError("--grammar and --json-schema cannot be used together")
        }
    }

    private func read(_ path: String) throws -> Data {
        do { return try Data(contentsOf: URL(fileURLWithPath: path)) } catch { throw ANELMError("cannot read \(path)") }
    }
}
