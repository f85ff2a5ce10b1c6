/// Chat templates built into anelm, for models whose files carry none (`--template NAME`).
/// Copied verbatim from the test fixtures named beside each one.
public enum BuiltinChatTemplates {
    /// Name → Jinja source.
    public static let all: [String: String] = [
        "chatml": chatml,
        "gemma3": gemma3,
        "gemma2": gemma2,
    ]

    public static var names: [String] { all.keys.sorted() }

    /// The template a family's instruction-tuned models use, for files that carry none (GGUF architecture names,
    /// or config.json `model_type`), with the token that ends a turn.
    public static func forArchitecture(_ architecture: String) -> (name: String, source: String, endOfTurn: String)? {
        switch architecture.lowercased() {
        case "gemma3", "gemma3_text", "gemma3forcausallm": ("gemma3", gemma3, "<end_of_turn>")
        case "gemma2", "gemma2forcausallm": ("gemma2", gemma2, "<end_of_turn>")
        case "qwen2", "qwen2forcausallm": ("chatml", chatml, "<|im_end|>")
        default: nil
        }
    }

    /// The template called `name`, or an error listing the built-in names.
    public static func named(_ name: String) throws -> String {
        guard let source = all[name] else {
            throw ANELMError("no built-in chat template '\(name)'; built-in: \(names.joined(separator: ", "))")
        }
        return source
    }

    /// ChatML (Qwen2-style, no default system message); from `Tests/Fixtures/models/tiny-qwen2/chat_template.jinja`.
    static let chatml = #"""
        {% for message in messages %}<|im_start|>{{ message['role'] }}
        {{ message['content'] }}<|im_end|>
        {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
        {% endif %}
        """#

    /// Gemma 3 instruction-tuned (google/gemma-3-*-it); from `Tests/Fixtures/chat_templates/templates/gemma-3-it.jinja`.
    static let gemma3 = #"""
        {{ bos_token }}
        {%- if messages[0]['role'] == 'system' -%}
            {%- if messages[0]['content'] is string -%}
                {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
            {%- else -%}
                {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
            {%- endif -%}
            {%- set loop_messages = messages[1:] -%}
        {%- else -%}
            {%- set first_user_prefix = "" -%}
            {%- set loop_messages = messages -%}
        {%- endif -%}
        {%- for message in loop_messages -%}
            {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
                {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
            {%- endif -%}
            {%- if (message['role'] == 'assistant') -%}
                {%- set role = "model" -%}
            {%- else -%}
                {%- set role = message['role'] -%}
            {%- endif -%}
            {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
            {%- if message['content'] is string -%}
                {{ message['content'] | trim }}
            {%- elif message['content'] is iterable -%}
                {%- for item in message['content'] -%}
                    {%- if item['type'] == 'image' -%}
                        {{ '<start_of_image>' }}
                    {%- elif item['type'] == 'text' -%}
                        {{ item['text'] | trim }}
                    {%- endif -%}
                {%- endfor -%}
            {%- else -%}
                {{ raise_exception("Invalid content type") }}
            {%- endif -%}
            {{ '<end_of_turn>\n' }}
        {%- endfor -%}
        {%- if add_generation_prompt -%}
            {{'<start_of_turn>model\n'}}
        {%- endif -%}

        """#

    /// Gemma 2 instruction-tuned (google/gemma-2-*-it); from `Tests/Fixtures/chat_templates/templates/gemma-2-it.jinja`.
    static let gemma2 = #"""
        {{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '
        ' + message['content'] | trim + '<end_of_turn>
        ' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model
        '}}{% endif %}
        """#
}
