import ANELM
import ANELMContext
import ArgumentParser
import Foundation

struct Ask: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Answer a question from a context store: retrieved chunks in the prompt, numbered citations, the answer logged for training.")

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions
    @Option(name: .long, help: "The question.") var prompt: String
    @Option(name: .long, parsing: .unconditional, help: "Chunks in the prompt at most (fewer when the context is short).") var topK: Int = 5
    @Option(name: .long, parsing: .unconditional, help: "Of those, places given to lower-ranked chunks, so the log also learns about them.")
    var explore: Int = 0
    @OptionGroup var templateOption: TemplateOption
    @Option(name: .long, help: "text, or json (one object on the last line).") var format: OutputFormat = .text

    func run() throws {
        let engine = try storeOption.openEngine(threads: modelOptions.threads)
        let loaded = try modelOptions.load()
        let template = try templateOption.source()
        var parameters = try sampling.parameters(for: loaded)
        let context = loaded.model.contextLength
        guard parameters.maxTokens < context else { throw ANELMError("--max-tokens \(parameters.maxTokens) leaves no room in the \(context)-token context") }
        let grounded = try engine.groundedPrompt(question: prompt, topK: topK, budget: context - parameters.maxTokens, exploration: explore) {
            try loaded.chatPromptTokens($0, template: template).count
        }
        let tokens = try loaded.chatPromptTokens(grounded.messages, template: template)
        parameters.maxTokens = min(parameters.maxTokens, context - tokens.count)
        let result = try loaded.makeSession().generate(prompt: tokens, parameters: parameters) { chunk in
            if format == .text, !chunk.text.isEmpty { FileHandle.standardOutput.write(Data(chunk.text.utf8)) }
            return true
        }
        let logged = try engine.record(grounded, response: result.text, model: loaded.name)
        let used = Set(logged.used)
        switch format {
        case .text:
            print("\n")
            for (i, chunk) in grounded.sources.enumerated() {
                let heading = chunk.headingPath.isEmpty ? "" : " › \(chunk.headingPath)"
                print("[\(i + 1)] \(chunk.source)\(heading) (chunk \(chunk.id))\(used.contains(chunk.id) ? " — used" : "")")
            }
            printError("answer \(logged.answerID) logged; tell anelm which sources helped: anelm feedback --store \(storeOption.store) --answer \(logged.answerID) --useful N")
        case .json:
            try writeJSONLine([
                "answer": result.text, "answer_id": logged.answerID, "finish_reason": result.finishReason.rawValue,
                "relevance_version": logged.relevanceVersion.map { $0 as Any } ?? NSNull(),
                "sources": grounded.sources.enumerated().map { i, chunk in
                    ["number": i + 1, "chunk": chunk.id, "source": chunk.source, "used": used.contains(chunk.id)] as [String: Any]
                },
            ])
        }
    }
}
