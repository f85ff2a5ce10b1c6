import ANELM
import ANELMContext
import Foundation

/// Chat completions with the `"context"` extension, answered from the server's context store.
extension Endpoints {
    /// The chat grounded in the store: the last user message is the question; its retrieved chunks replace it as the
    /// grounded prompt's messages, after the earlier turns; the prompt fits the context less `maxTokens`.
    func grounded(
        _ messages: [ChatMessage], model: ServedModel, options: CompletionRequest.ContextOptions, maxTokens: Int?
    ) throws -> (tokens: [Int], grounding: Grounding) {
        guard let context else {
            throw APIError.invalid("this server has no context store; start it with --store", param: "context", code: "no_context_store")
        }
        if let name = options.store, name != context.store.path, name != URL(fileURLWithPath: context.store.path).lastPathComponent {
            throw APIError.invalid("this server serves the store '\(URL(fileURLWithPath: context.store.path).lastPathComponent)', not '\(name)'", param: "context.store")
        }
        guard let last = messages.last, last.role == "user" else {
            throw APIError.invalid("with 'context', the last message must be the user's question", param: "messages")
        }
        let earlier = Array(messages.dropLast()).filter { $0.role != "system" }
        let budget = model.contextLength - (maxTokens ?? min(512, model.contextLength / 4))
        guard budget > 0 else { throw APIError.invalid("'max_tokens' leaves no room for a grounded prompt", param: "max_tokens") }
        do {
            let prompt = try context.groundedPrompt(question: last.content, topK: options.topK, budget: budget) { grounded in
                try model.loaded.chatPromptTokens(Array(grounded.prefix(1)) + earlier + Array(grounded.dropFirst()), template: model.template).count
            }
            let full = Array(prompt.messages.prefix(1)) + earlier + Array(prompt.messages.dropFirst())
            return (try model.loaded.chatPromptTokens(full, template: model.template), Grounding(engine: context, prompt: prompt, model: model.id))
        } catch let e as ANELMError {
            throw APIError.invalid(e.message, param: "context")
        }
    }
}

/// A grounded request's prompt, to log the answer with when it is complete and to report its chunks.
struct Grounding: Sendable {
    let engine: ContextEngine
    let prompt: GroundedPrompt
    let model: String

    /// Logs the answer and adds `"context": {"answer_id", "chunks", "used_chunks", "relevance_version", "passages"}` to `response`.
    func attach(to response: JSONValue, text: String) -> JSONValue {
        guard case .object(var object) = response else { return response }
        var extensionField: JSONObject = [
            "chunks": .array(prompt.sources.map { .int(Int($0.id)) }),
            "relevance_version": prompt.search.relevanceVersion.map { .int($0) } ?? .null,
            // The passages as the prompt numbered them ([1] first), so a client can show what each citation points to.
            "passages": .array(
                prompt.sources.enumerated().map { i, chunk in
                    [
                        "citation": .int(i + 1), "id": .int(Int(chunk.id)), "source": .string(chunk.source), "heading": .string(chunk.headingPath),
                        "text": .string(chunk.text),
                    ]
                }),
        ]
        do {
            let logged = try engine.record(prompt, response: text, model: model)
            extensionField["answer_id"] = .int(Int(logged.answerID))
            extensionField["used_chunks"] = .array(logged.used.map { .int(Int($0)) })
        } catch {
            // The answer stands; only its log entry failed (a locked store): say so rather than fail the reply.
            extensionField["answer_id"] = .null
            extensionField["log_error"] = .string("\(error)")
        }
        object["context"] = .object(extensionField)
        return .object(object)
    }
}
