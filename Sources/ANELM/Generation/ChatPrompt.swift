import Foundation

extension LoadedModel {
    /// The prompt text of a conversation as the model's own chat template (or `template`, a Jinja
    /// source that replaces it) renders it, ending where the assistant's reply begins.
    public func chatPromptText(_ messages: [ChatMessage], template: String? = nil) throws -> String {
        guard let source = template ?? chatTemplate else {
            throw ANELMError("\(name) has no chat template; pick a built-in one with --template (\(BuiltinChatTemplates.names.joined(separator: ", "))) or use a raw prompt (without --chat)")
        }
        let template = try ChatTemplate(source)
        return try template.render(messages: messages, addGenerationPrompt: true,
                                   bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken)
    }

    /// Token ids of `chatPromptText`. The template writes BOS itself, so the tokenizer adds no
    /// special tokens (as transformers' `apply_chat_template` does).
    public func chatPromptTokens(_ messages: [ChatMessage], template: String? = nil) throws -> [Int] {
        tokenizer.encode(try chatPromptText(messages, template: template), addSpecialTokens: false)
    }
}
