"""The checks `run` performs with the official client; prints one line per check and exits 1 on a failure."""
import json
import sys
import time

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="none")
failures = []


def check(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (f" — {detail}" if detail else ""), flush=True)
    if not ok:
        failures.append(name)


def timed(name, fn):
    start = time.time()
    try:
        fn()
    except Exception as error:  # a failure of the server or of a check
        check(name, False, repr(error))
    print(f"     ({time.time() - start:.1f} s)", flush=True)


models = [m.id for m in client.models.list().data]
check("two models listed", len(models) == 2, str(models))

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def valid_weather(arguments):
    value = json.loads(arguments)
    return set(value) == {"city", "unit"} and isinstance(value["city"], str) and value["unit"] in ("celsius", "fahrenheit")


for model in models:
    def chat():
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi! My name is Ada."}], max_tokens=40)
        check(f"{model}: chat", bool(r.choices[0].message.content), repr(r.choices[0].message.content[:60]))

    def structured():
        schema = {
            "type": "object", "additionalProperties": False, "required": ["name", "age", "tags"],
            "properties": {"name": {"type": "string", "maxLength": 30}, "age": {"type": "integer", "minimum": 0, "maximum": 150},
                           "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3}},
        }
        r = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Invent a person as JSON."}], max_tokens=120, temperature=0,
            response_format={"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": schema}})
        value = json.loads(r.choices[0].message.content)
        check(f"{model}: structured output", set(value) == {"name", "age", "tags"} and 0 <= value["age"] <= 150, r.choices[0].message.content)

    def required():
        r = client.chat.completions.create(model=model, messages=ASK, tools=[WEATHER, TIME], tool_choice="required", max_tokens=80)
        c = r.choices[0]
        calls = c.message.tool_calls or []
        ok = c.finish_reason == "tool_calls" and len(calls) == 1 and calls[0].function.name in ("get_weather", "get_time")
        if ok and calls[0].function.name == "get_weather":
            ok = valid_weather(calls[0].function.arguments)
        check(f"{model}: tool_choice required", ok, calls[0].function.model_dump_json() if calls else repr(c.message))

    def named_streamed():
        stream = client.chat.completions.create(
            model=model, messages=ASK, tools=[TIME, WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}},
            max_tokens=80, stream=True)
        name, arguments, call_id, reason = "", "", None, None
        for chunk in stream:
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            reason = choice.finish_reason or reason
            for delta in choice.delta.tool_calls or []:
                call_id = delta.id or call_id
                name += delta.function.name or "" if delta.function else ""
                arguments += delta.function.arguments or "" if delta.function else ""
        check(f"{model}: named function, streamed", reason == "tool_calls" and name == "get_weather" and valid_weather(arguments), arguments)
        # The round trip: the call and its result go back.
        r = client.chat.completions.create(
            model=model, max_tokens=40, tools=[WEATHER],
            messages=ASK + [
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
                {"role": "tool", "tool_call_id": call_id, "content": '{"sky": "sunny", "celsius": 24}'},
            ])
        check(f"{model}: tool result round trip", r.choices[0].finish_reason in ("stop", "length", "tool_calls"), repr(r.choices[0].message.content))

    def named():
        r = client.chat.completions.create(
            model=model, messages=ASK, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=80)
        calls = r.choices[0].message.tool_calls or []
        check(f"{model}: named function", len(calls) == 1 and calls[0].function.name == "get_weather" and valid_weather(calls[0].function.arguments),
              calls[0].function.arguments if calls else "")

    def logprobs():
        r = client.chat.completions.create(model=model, messages=ASK, max_tokens=8, logprobs=True, top_logprobs=3, temperature=0)
        content = r.choices[0].logprobs.content
        ok = len(content) > 0 and all(t.logprob <= 0 and len(t.top_logprobs) == 3 and t.bytes is not None for t in content)
        ok = ok and all(abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6 for t in content)  # greedy takes the best
        check(f"{model}: logprobs", ok, " ".join(f"{t.token!r}:{t.logprob:.2f}" for t in content[:4]))
        tokens = []
        for chunk in client.chat.completions.create(model=model, messages=ASK, max_tokens=8, logprobs=True, temperature=0, stream=True):
            if chunk.choices and chunk.choices[0].logprobs:
                tokens += [t.token for t in chunk.choices[0].logprobs.content]
        check(f"{model}: logprobs streamed", tokens == [t.token for t in content], str(tokens))
        c = client.completions.create(model=model, prompt="The capital of France is", max_tokens=4, logprobs=2, temperature=0)
        check(f"{model}: completions logprobs", len(c.choices[0].logprobs.token_logprobs) > 0, str(c.choices[0].logprobs.tokens))

    def n_choices():
        r = client.chat.completions.create(model=model, messages=ASK, max_tokens=8, n=2, seed=1)
        check(f"{model}: n=2", [c.index for c in r.choices] == [0, 1])

    for name, fn in [("chat", chat), ("structured", structured), ("required", required), ("named", named), ("named streamed", named_streamed),
                     ("logprobs", logprobs), ("n", n_choices)]:
        timed(f"{model}: {name}", fn)

try:
    client.chat.completions.create(model="no-such-model", messages=ASK, max_tokens=2)
    check("unknown model is a 404", False)
except Exception as error:
    check("unknown model is a 404", getattr(error, "status_code", None) == 404, repr(error)[:120])

print(f"{len(failures)} failed" if failures else "all passed")
sys.exit(1 if failures else 0)
