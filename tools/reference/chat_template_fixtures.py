#!/usr/bin/env python3
"""Renders real chat templates with transformers' own Jinja renderer and writes anelm's fixtures.

Usage: HF_HUB_OFFLINE=1 python tools/reference/chat_template_fixtures.py --gguf PATH --out Tests/Fixtures/chat_templates

Writes <out>/templates/smollm2-instruct.jinja (read from the GGUF's tokenizer.chat_template) and
<out>/chat_template_fixtures.json with, for every template x conversation x add_generation_prompt,
the expected text or the expected error; plus interpreter unit cases rendered by the same jinja2
environment transformers builds (trim_blocks, lstrip_blocks, loopcontrols, tojson, raise_exception).
"""
import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jinja2  # noqa: E402
import transformers  # noqa: E402
from transformers.utils.chat_template_utils import _compile_jinja_template, render_jinja_template  # noqa: E402

# name -> (bos_token, eos_token, extra template kwargs). bos None = the tokenizer has no BOS token,
# so apply_chat_template leaves `bos_token` undefined. Llama 3.2 would call strftime_now: fix its date.
MODELS = {
    "smollm2-instruct": (None, None, {}),  # filled from the GGUF
    "qwen2.5-instruct": (None, "<|im_end|>", {}),
    "qwen3": (None, "<|im_end|>", {}),
    "llama-3.1-instruct": ("<|begin_of_text|>", "<|eot_id|>", {}),
    "llama-3.2-instruct": ("<|begin_of_text|>", "<|eot_id|>", {"date_string": "26 Jul 2024"}),
    "mistral-7b-instruct-v0.3": ("<s>", "</s>", {}),
    "mistral-nemo-instruct-2407": ("<s>", "</s>", {}),
    "gemma-3-it": ("<bos>", "<eos>", {}),
    "gemma-2-it": ("<bos>", "<eos>", {}),
    "phi-3.5-mini-instruct": ("<s>", "<|endoftext|>", {}),
}

U, A, S = "user", "assistant", "system"
CONVERSATIONS = {
    "single_user": [{"role": U, "content": "Hello!"}],
    "system_user": [{"role": S, "content": "You are terse."}, {"role": U, "content": "What is 2+2?"}],
    "multi_turn": [
        {"role": S, "content": "Be kind."},
        {"role": U, "content": "Hi"},
        {"role": A, "content": "Hello! How can I help?"},
        {"role": U, "content": "Tell me a joke."},
        {"role": A, "content": "Why did the chicken cross the road?"},
        {"role": U, "content": "Why?"},
    ],
    "multi_turn_no_system": [
        {"role": U, "content": "One"},
        {"role": A, "content": "Two"},
        {"role": U, "content": "Three"},
    ],
    "unicode_quotes": [
        {"role": U, "content": "Héllo wörld 👋🏽 — «quotes» \"double\" 'single' \\backslash\n\nnew\tline  "},
        {"role": A, "content": "  日本語のテキスト 🎉\n"},
        {"role": U, "content": "{{ not a template }} {% neither %}"},
    ],
    "empty_content": [{"role": U, "content": ""}],
    "whitespace_content": [{"role": S, "content": "  padded system  "}, {"role": U, "content": "\n  spaced  \n"}],
    "thinking_assistant": [
        {"role": U, "content": "Q"},
        {"role": A, "content": "<think>\nreasoning here\n</think>\n\nThe answer."},
        {"role": U, "content": "Again"},
    ],
    "non_alternating": [{"role": U, "content": "a"}, {"role": U, "content": "b"}],
    "starts_with_assistant": [{"role": A, "content": "I start."}, {"role": U, "content": "ok"}],
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather — «now» for a \"city\"",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "days": {"type": "integer", "description": "How many days", "minimum": 1.5},
                },
                "required": ["city"],
            },
        },
    }
]
# Tool round trips in OpenAI's shape (arguments as JSON text, as clients send them); rendered with the
# arguments parsed into objects, as anelm passes them to templates. Ids are 9 characters (Mistral needs that).
TOOL_TEMPLATES = ["qwen2.5-instruct", "qwen3", "llama-3.1-instruct", "llama-3.2-instruct", "mistral-7b-instruct-v0.3", "mistral-nemo-instruct-2407"]
TOOL_CONVERSATIONS = {
    "call_and_result": [
        {"role": U, "content": "What is the weather in Paris?"},
        {"role": A, "content": "", "tool_calls": [
            {"id": "call0abcd", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"}}]},
        {"role": "tool", "tool_call_id": "call0abcd", "name": "get_weather", "content": "{\"sky\": \"clear\", \"celsius\": 21}"},
    ],
    "two_calls": [
        {"role": S, "content": "Use tools when useful."},
        {"role": U, "content": "Weather in Oslo and Rome?"},
        {"role": A, "content": "", "tool_calls": [
            {"id": "call1abcd", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}},
            {"id": "call2abcd", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "call1abcd", "name": "get_weather", "content": "snow"},
        {"role": "tool", "tool_call_id": "call2abcd", "name": "get_weather", "content": "sun"},
        {"role": A, "content": "Snow in Oslo, sun in Rome."},
        {"role": U, "content": "Thanks!"},
    ],
}


def as_template_messages(messages):
    out = []
    for message in messages:
        message = dict(message)
        if "tool_calls" in message:
            message["tool_calls"] = [
                {**call, "function": {**call["function"], "arguments": json.loads(call["function"]["arguments"])}}
                for call in message["tool_calls"]
            ]
        out.append(message)
    return out


# Extra template variables rendered over a few conversations: (label, variables, conversations).
VARIANTS = [
    ("tools", {"tools": TOOLS}, ["single_user", "system_user", "multi_turn_no_system"]),
    ("no_thinking", {"enable_thinking": False}, ["single_user"]),
]

# Interpreter unit cases: (name, template, variables). Expected values come from jinja2, not by hand.
UNIT_CASES = [
    ("ws_trim_blocks", "{% if true %}\nx\n{% endif %}\ny", {}),
    ("ws_lstrip_blocks", "a\n    {% if true %}\n    b\n    {% endif %}\nc", {}),
    ("ws_lstrip_not_expressions", "  {{ 'k' }}\n  {# c #}\n  z", {}),
    ("ws_minus_both", "a   {{- ' x ' -}}   b", {}),
    ("ws_minus_blocks", "  a  {%- if true -%}  y  {%- endif -%}  b  ", {}),
    ("ws_plus_disables_lstrip", "  {%+ if true %}x{% endif %}", {}),
    ("ws_comment", "a {#- hidden -#} b\n{# c #}\nd", {}),
    ("ws_trailing_newline_kept", "x\n", {}),
    ("ws_trim_block_crlf", "{% if true %}\r\nx{% endif %}", {}),
    ("loop_vars", "{% for x in items %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }}|{% endfor %}", {"items": ["a", "b", "c"]}),
    ("loop_else", "{% for x in [] %}{{ x }}{% else %}empty{% endfor %}", {}),
    ("loop_filter", "{% for x in range(10) if x is odd %}{{ x }}{{ loop.index }},{% endfor %}", {}),
    ("loop_break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("loop_nested", "{% for a in [1,2] %}{% for b in 'xy' %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }};{% endfor %}", {}),
    ("loop_unpack_items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("loop_over_dict", "{% for k in d %}{{ k }}{% endfor %}", {"d": {"z": 1, "y": 2}}),
    ("loop_prev_next", "{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }} {% endfor %}", {}),
    ("loop_cycle", "{% for x in [1,2,3] %}{{ loop.cycle('a','b') }}{% endfor %}", {}),
    ("set_scoping", "{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}", {}),
    ("set_if_leaks", "{% if true %}{% set y = 5 %}{% endif %}{{ y }}", {}),
    ("namespace", "{% set ns = namespace(x=1, s='') %}{% for i in [1,2,3] %}{% set ns.x = ns.x + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.x }} {{ ns.s }}", {}),
    ("namespace_empty", "{% set ns = namespace() %}{% set ns.found = true %}{{ ns.found }}", {}),
    ("set_block", "{% set b %}hello {{ 1 + 1 }}{% endset %}[{{ b }}]", {}),
    ("set_tuple", "{% set a, b = [1, 2] %}{{ a }}{{ b }}", {}),
    ("macro", "{% macro f(a, b='z') %}[{{ a }}{{ b }}]{% endmacro %}{{ f(1) }}{{ f(1, b=2) }}{{ f('q', 'r') }}", {}),
    ("macro_caller", "{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}inner{% endcall %}", {}),
    ("if_elif_else", "{% for n in [1, 2, 3] %}{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %} {% endfor %}", {}),
    ("arith", "{{ 7 // 2 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 7 % 3 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 1 + 2.5 }} {{ 10 / 5 }} {{ 3 * 1.5 }} {{ 2 - 5 }} {{ 'ab' * 3 }} {{ 0.1 + 0.2 }}", {}),
    ("concat", "{{ 'a' ~ 1 ~ none ~ true ~ 1.5 }} {{ [1, 2] + [3] }} {{ 'x' + 'y' }}", {}),
    ("print_values", "{{ [1, 'a', none, true, 1.5, 1.0, {'k': [2]}] }}|{{ none }}|{{ true }}|{{ 1e20 }}|{{ 1.5e-7 }}|{{ 100.0 }}|{{ ['it\\'s', 'say \"hi\"', 'both \\' \"', 'nl\\n'] }}|{{ (1, 2) }}", {}),
    ("print_large_float", "{{ 1e16 }} {{ 123456789012345678.0 }} {{ 1e15 }} {{ 2.0 ** 60 }}", {}),
    ("comparisons", "{{ 1 < 2 }} {{ 2 <= 1 }} {{ 'a' == 'a' }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ 1 < 2 < 3 }} {{ [1] == [1] }} {{ none == none }}", {}),
    ("logic", "{{ true and false }} {{ 0 or 'x' }} {{ '' or [] }} {{ not 0 }} {{ 1 and 2 }} {{ none or 0 }}", {}),
    ("in_operator", "{{ 'a' in 'cat' }} {{ 1 in [1, 2] }} {{ 'k' in d }} {{ 'z' not in d }} {{ 3 not in [1] }}", {"d": {"k": 1}}),
    ("tests", "{{ x is defined }} {{ y is undefined }} {{ none is none }} {{ 's' is string }} {{ 1 is number }} {{ 1.5 is number }} {{ d is mapping }} {{ [] is iterable }} {{ 's' is iterable }} {{ d is iterable }} {{ [] is sequence }} {{ true is true }} {{ 1 is true }} {{ false is false }} {{ true is boolean }} {{ 1 is integer }} {{ 1.0 is float }} {{ true is integer }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 'a' is equalto 'a' }} {{ 2 is gt 1 }} {{ x is not none }} {{ 1 is number and 1 is not string }} {{ 'a' is lower }} {{ 'A' is upper }} {{ d is callable }}", {"x": 1, "d": {"a": 1}}),
    ("conditional_expr", "{{ 'y' if true else 'n' }}{{ 'y' if false else 'n' }}[{{ 'only' if false }}]", {}),
    ("filters_str", "{{ '  pad  ' | trim }}|{{ 'abc' | upper }}|{{ 'ABC' | lower }}|{{ 'hello world' | capitalize }}|{{ 'hello wORLD-x y' | title }}|{{ 'a-b-a' | replace('a', 'z') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 'xxhixx' | trim('x') }}", {}),
    ("filters_len_first_last", "{{ [1,2,3] | length }} {{ 'abcd' | count }} {{ [1,2,3] | first }} {{ [1,2,3] | last }} {{ 'abc' | first }} {{ d | length }}", {"d": {"a": 1, "b": 2}}),
    ("filters_join", "{{ [1, 'a', 2.5] | join }}|{{ ['a', 'b'] | join(', ') }}|{{ users | join(', ', attribute='name') }}", {"users": [{"name": "Ann"}, {"name": "Bo"}]}),
    ("filters_default", "{{ nothing | default('dflt') }}|{{ none | default('dflt') }}|{{ none | default('dflt', true) }}|{{ '' | d('e', true) }}|{{ 'v' | default('x') }}|{{ d.missing | default('m') }}", {"d": {}}),
    ("filters_tojson", "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ d | tojson(sort_keys=true) }}|{{ 'é 👋 \"q\" <tag> & \\\\ \\n' | tojson }}|{{ [1.0, 2, none, true, 0.5] | tojson }}|{{ d | tojson(separators=(',', ':')) }}|{{ {} | tojson(indent=4) }}|{{ [] | tojson(indent=4) }}|{{ {'a': []} | tojson(indent=4) }}", {"d": {"z": {"n": [1, {"x": "y"}]}, "a": "b"}}),
    ("filters_convert", "{{ 1 | string }}{{ '5' | int + 1 }}{{ 'x' | int }}{{ 3.9 | int }}{{ '2.5' | float }}{{ 2 | float }}{{ 'ab' | list }}{{ 'zz' | float }}{{ true | string }}{{ none | string }}{{ [1, 'a'] | string }}", {}),
    ("filters_map_select", "{{ users | map(attribute='name') | join(',') }}|{{ [1,2,3,4] | select('odd') | list }}|{{ [1,2,3,4] | reject('even') | list }}|{{ users | selectattr('admin') | map(attribute='name') | list }}|{{ users | rejectattr('admin') | map(attribute='name') | list }}|{{ users | selectattr('name', 'equalto', 'Bo') | list | length }}|{{ ['a','B'] | map('upper') | list }}|{{ [0, 1, '', 'x', none] | select | list }}|{{ users | selectattr('role', 'defined') | list | length }}|{{ users | map(attribute='role', default='?') | list }}", {"users": [{"name": "Ann", "admin": True}, {"name": "Bo", "admin": False, "role": "r"}]}),
    ("filters_items_dictsort", "{{ d | items | list }}|{{ d | dictsort }}|{% for k, v in d | dictsort(reverse=true) %}{{ k }}{{ v }}{% endfor %}|{{ d | dictsort(by='value') }}", {"d": {"b": 2, "A": 3, "c": 1}}),
    ("filters_indent", "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(1, blank=true) }}|{{ 'x\\ny' | indent('> ') }}", {}),
    ("filters_misc", "{{ '<b>' | safe }}|{{ [3, 1, 3, 2, 1] | unique | list }}|{{ 2.567 | round(2) }}|{{ 2.5 | round }}|{{ 3.5 | round }}|{{ -3 | abs }}|{{ -2.5 | abs }}|{{ 2.4 | round(0, 'ceil') }}|{{ 2.6 | round(method='floor') }}|{{ [3,1,2] | sort | list }}|{{ [3,1,2] | reverse | list }}|{{ 'abc' | reverse }}|{{ [1,2,3] | sum }}|{{ [3,1,2] | max }}|{{ [3,1,2] | min }}|{{ 'a b  c' | wordcount }}|{{ 'x' | center(5) }}|", {}),
    ("string_methods", "{{ '  s  '.strip() }}|{{ 'xxsxx'.strip('x') }}|{{ '  s  '.lstrip() }}|{{ '  s  '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith('bc') }}|{{ 'aBc'.upper() }}|{{ 'aBc'.lower() }}|{{ 'ab cd'.title() }}|{{ 'aXa'.replace('a', 'b') }}|{{ '{} and {}'.format(1, 'two') }}|{{ 'ab'.capitalize() }}|{{ 'abcabc'.find('c') }}|{{ 'abcabc'.count('b') }}|{{ 'a\\nb'.splitlines() }}|{{ 'abc'.rsplit('b') }}|{{ '-'.join(['x', 'y']) }}|{{ 'Hello'.isalpha() }}|{{ '12'.isdigit() }}|{{ 'abc'.startswith(('x', 'a')) }}", {}),
    ("dict_methods", "{{ d.items() | list }}|{{ d.keys() | list }}|{{ d.values() | list }}|{{ d.get('a') }}|{{ d.get('zz', 'dflt') }}|{{ d.get('zz') }}|{{ d['a'] }}|{{ d.a }}", {"d": {"a": 1, "b": [2]}}),
    ("subscripts_slices", "{{ l[0] }}{{ l[-1] }}{{ l[1:] }}{{ l[:-1] }}{{ l[::-1] }}{{ l[::2] }}{{ l[-2:] }}{{ s[1:3] }}{{ s[::-1] }}{{ s[-1] }}{{ l[1:10] }}{{ l[5:] }}{{ s[0] }}", {"l": [1, 2, 3, 4], "s": "hello"}),
    ("attribute_vs_item", "{{ m.role }}/{{ m['role'] }}/{{ m.content }}/{{ m.missing }}/{{ l.0 }}", {"m": {"role": "user", "content": "hi"}, "l": ["zero"]}),
    ("undefined_semantics", "[{{ nothing }}][{% if nothing %}t{% else %}f{% endif %}][{{ nothing is defined }}][{{ nothing | length }}][{% for x in nothing %}x{% endfor %}][{{ d.missing is defined }}][{{ d['missing'] is none }}]", {"d": {}}),
    ("truthiness", "{% for v in [0, 1, '', 'a', [], [0], {}, none, 0.0, false] %}{{ 'T' if v else 'F' }}{% endfor %}", {}),
    ("string_escapes", "{{ 'a\\tb' }}|{{ \"q\\\"q\" }}|{{ 'u\\u00e9' }}|{{ 'nl\\n' }}|{{ 'back\\\\slash' }}", {}),
    ("list_dict_literals", "{{ [] }}{{ {} }}{{ {'a': 1, 'b': [1, 2]}['b'][1] }}{{ ('x',) }}{{ [1, [2, [3]]] }}", {}),
    ("range_and_len", "{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ range(5, 0, -2) | list }}", {}),
    ("raise_exception", "{% if true %}{{ raise_exception('Custom failure: ' ~ 42) }}{% endif %}", {}),
    ("undefined_attribute_error", "{{ nothing.attr }}", {}),
    ("type_error_add", "{{ 1 + 'a' }}", {}),
    ("unknown_filter", "{{ 'a' | nofilter }}", {}),
    ("unknown_test", "{{ 'a' is notatest }}", {}),
    ("integer_division_by_zero", "{{ 1 // 0 }}", {}),
    ("messages_var", "{{ messages | length }} {{ add_generation_prompt }} {{ tools }} {{ documents is none }}", {}),
    ("generation_block", "a{% generation %}b{{ 1 }}{% endgeneration %}c", {}),
    ("filter_block", "{% filter upper %}abc{% endfilter %}", {}),
    ("whitespace_control_nested", "{%- for m in ['a', 'b'] -%}\n  [{{- m -}}]\n{%- endfor -%}\n", {}),
    ("filtered_loop_length", "{% for x in [1, 2, 3, 4] if x > 1 %}{{ loop.length }}{{ loop.last }}{% endfor %}", {}),
    ("is_not_defined", "{{ x is not defined }} {{ m.content is string }} {{ 'content' in m }} {{ 'tool_calls' in m }}", {"m": {"role": "u", "content": "c"}}),
    ("float_concat", "{{ 'a' ~ 1.0 ~ 2.50 }} {{ 3 / 0.5 }} {{ 1 / 3 }} {{ 2 / 3 * 3 }}", {}),
    ("nested_namespace_loop", "{% set ns = namespace(items=[]) %}{% for m in msgs %}{% if m.role == 'user' %}{% set ns.items = ns.items + [m.content] %}{% endif %}{% endfor %}{{ ns.items | join('|') }} {{ ns.items | length }}", {"msgs": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}),
    ("string_comparisons", "{{ 'a' < 'b' }} {{ 'B' < 'a' }} {{ 'abc' >= 'abd' }} {{ [1, 2] | max }} {{ ['b', 'a'] | sort }}", {}),
    ("conditional_chain", "{{ 'x' if a else 'y' if b else 'z' }}|{{ (a or b) and 'both' }}", {"a": False, "b": True}),
    ("unicode_methods", "{{ 'ÉCOLE'.lower() }} {{ 'straße'.upper() }} {{ 'héllo wörld' | title }} {{ '日本語' | length }} {{ '👋🏽' | length }} {{ 'añb'[1] }}", {}),
    ("tojson_nested_tools", "{% for t in tools %}{{ t | tojson(indent=4) }}\n{{ t.function.parameters | tojson }}{% endfor %}", {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"a": [1, 2.5, None, True, "é"], "b": {}}}}]}),
    ("raw_block", "{% raw %}{{ not rendered }}{% endraw %}", {}),
]

SYNTAX_ERRORS = [
    ("unclosed_if", "{% if true %}x"),
    ("unclosed_for", "line1\n{% for x in y %}\n{{ x }}"),
    ("bad_expression", "{{ 1 + }}"),
    ("stray_endfor", "a\nb\n{% endfor %}"),
    ("unclosed_variable", "{{ 'a' "),
    ("unknown_tag", "{% frobnicate %}"),
    ("unclosed_string", "{{ 'abc }}"),
    ("unclosed_comment", "{# never closed"),
    ("bad_for_target", "{% for 1 in x %}{% endfor %}"),
    ("unbalanced_paren", "{{ (1 + 2 }}"),
]


def render_conversation(template, messages, add_generation_prompt, bos, eos, extra):
    kwargs = dict(extra)
    if bos is not None:
        kwargs["bos_token"] = bos
    if eos is not None:
        kwargs["eos_token"] = eos
    try:
        rendered, _ = render_jinja_template(
            conversations=[messages], chat_template=template, add_generation_prompt=add_generation_prompt, **kwargs
        )
        return {"output": rendered[0]}
    except jinja2.exceptions.TemplateError as error:
        return {"error": str(error)}


def render_unit(template, variables):
    try:
        compiled = _compile_jinja_template(template)
    except jinja2.exceptions.TemplateError as error:
        return {"error": str(error), "error_kind": "compile"}
    try:
        # The same fixed variables `render_jinja_template` always passes, then the case's own.
        context = {"messages": [], "tools": None, "documents": None, "add_generation_prompt": False}
        context.update(variables)
        return {"output": compiled.render(**context)}
    except jinja2.exceptions.TemplateError as error:
        kind = "raise" if type(error) is jinja2.exceptions.TemplateError else type(error).__name__
        return {"error": str(error), "error_kind": kind}
    except Exception as error:  # TypeError, ZeroDivisionError, ...: anelm only needs to throw
        return {"error": str(error), "error_kind": type(error).__name__}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from gguf import GGUFReader

    reader = GGUFReader(args.gguf)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    smol_template = reader.fields["tokenizer.chat_template"].contents()
    smol_bos = tokens[reader.fields["tokenizer.ggml.bos_token_id"].contents()]
    smol_eos = tokens[reader.fields["tokenizer.ggml.eos_token_id"].contents()]
    MODELS["smollm2-instruct"] = (smol_bos, smol_eos, {})
    template_dir = os.path.join(args.out, "templates")
    os.makedirs(template_dir, exist_ok=True)
    with open(os.path.join(template_dir, "smollm2-instruct.jinja"), "w", encoding="utf-8") as f:
        f.write(smol_template)

    templates = []
    for name, (bos, eos, extra) in MODELS.items():
        with open(os.path.join(template_dir, name + ".jinja"), encoding="utf-8", newline="") as f:
            source = f.read()
        cases = []
        for conv_name, messages in CONVERSATIONS.items():
            for add_generation_prompt in (False, True):
                case = {"conversation": conv_name, "add_generation_prompt": add_generation_prompt}
                case.update(render_conversation(source, messages, add_generation_prompt, bos, eos, extra))
                cases.append(case)
        for label, variables, conv_names in VARIANTS:
            for conv_name in conv_names:
                case = {"conversation": conv_name, "add_generation_prompt": True, "variant": label, "variables": variables}
                case.update(render_conversation(source, CONVERSATIONS[conv_name], True, bos, eos, {**extra, **variables}))
                cases.append(case)
        templates.append({"name": name, "file": name + ".jinja", "bos_token": bos, "eos_token": eos,
                          "extra": extra, "cases": cases})

    units = []
    for name, template, variables in UNIT_CASES:
        unit = {"name": name, "template": template, "variables": variables}
        unit.update(render_unit(template, variables))
        units.append(unit)
    syntax = []
    for name, template in SYNTAX_ERRORS:
        result = render_unit(template, {})
        assert "error" in result, name
        syntax.append({"name": name, "template": template, "error": result["error"]})

    tool_cases = []
    for name in TOOL_TEMPLATES:
        bos, eos, extra = MODELS[name]
        with open(os.path.join(template_dir, name + ".jinja"), encoding="utf-8", newline="") as f:
            source = f.read()
        for conv_name, messages in TOOL_CONVERSATIONS.items():
            case = {"template": name, "conversation": conv_name, "bos_token": bos, "eos_token": eos, "extra": extra}
            case.update(render_conversation(source, as_template_messages(messages), True, bos, eos, {**extra, "tools": TOOLS}))
            tool_cases.append(case)
    with open(os.path.join(args.out, "tool_call_fixtures.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/reference/chat_template_fixtures.py", "transformers": transformers.__version__,
                   "tools": TOOLS, "conversations": TOOL_CONVERSATIONS, "cases": tool_cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")

    fixture = {
        "generator": "tools/reference/chat_template_fixtures.py",
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "conversations": CONVERSATIONS,
        "templates": templates,
        "unit_cases": units,
        "syntax_errors": syntax,
    }
    with open(os.path.join(args.out, "chat_template_fixtures.json"), "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
