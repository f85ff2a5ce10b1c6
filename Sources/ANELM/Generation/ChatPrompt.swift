import Foundation

extension LoadedModel {
    /// The prompt text of a conversation as the model's own chat template renders it, ending
    /// where the assistant's reply begins.
    public func chatPromptText(_ messages: [ChatMessage]) throws -> String {
        guard let source = chatTemplate else {
            throw ANELMError("\(name) has no chat template; use a raw prompt (without --chat)")
        }
        let template = try ChatTemplate(source)
        return try template.render(messages: messages, addGenerationPrompt: true,
                                   bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken)
    }

    /// Token ids of `chatPromptText`. The template writes BOS itself, so the tokenizer adds no
    /// special tokens (as transformers' `apply_chat_template` does).
    public func chatPromptTokens(_ messages: [ChatMessage]) throws -> [Int] {
        tokenizer.encode(try chatPromptText(messages), addSpecialTokens: false)
    }
}
