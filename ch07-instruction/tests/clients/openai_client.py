"""OpenAI's official Python client against `ch07-instruction serve`.

Usage: openai_client.py BASE_URL MODEL EXPECTED_FILE [ADAPTER EXPECTED_ADAPTER_FILE]
EXPECTED_FILE holds `respond`'s greedy reply to "Name a planet." with --max-new-tokens 20;
ADAPTER names a LoRA adapter the server serves over MODEL, and EXPECTED_ADAPTER_FILE its reply.
"""
import sys

import openai

base_url, model, expected_file = sys.argv[1:4]
adapter, adapter_file = (sys.argv[4:6] + [None, None])[:2]


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read().strip("\n")


expected = read(expected_file)

client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=120)
question = [{"role": "user", "content": "Name a planet."}]

assert [m.id for m in client.models.list().data] == [model] + ([adapter] if adapter else [])

reply = client.chat.completions.create(model=model, messages=question, max_tokens=20, temperature=0)
choice = reply.choices[0]
assert choice.message.role == "assistant"
assert choice.message.content == expected, (choice.message.content, expected)
assert choice.finish_reason in ("stop", "length")
assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 0

pieces, usage, finish = [], None, None
stream = client.chat.completions.create(
    model=model, messages=question, max_tokens=20, temperature=0, stream=True, stream_options={"include_usage": True}
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        pieces.append(c.delta.content or "")
        finish = c.finish_reason or finish
assert "".join(pieces) == expected, ("".join(pieces), expected)
assert finish == choice.finish_reason and usage.completion_tokens == reply.usage.completion_tokens

completion = client.completions.create(model=model, prompt="Every effort moves you", max_tokens=8, temperature=0)
streamed = "".join(
    c.choices[0].text
    for c in client.completions.create(
        model=model, prompt="Every effort moves you", max_tokens=8, temperature=0, stream=True
    )
)
assert completion.choices[0].text == streamed and completion.usage.completion_tokens <= 8

# Log-probabilities: one per generated token, the chosen token among its alternatives.
scored = client.chat.completions.create(
    model=model, messages=question, max_tokens=8, temperature=0, logprobs=True, top_logprobs=3
)
tokens = scored.choices[0].logprobs.content
assert len(tokens) == scored.usage.completion_tokens, (len(tokens), scored.usage)
for token in tokens:
    assert token.logprob <= 0 and len(token.top_logprobs) == 3
    assert token.top_logprobs[0].logprob == token.logprob  # greedy: the most likely one
    assert bytes(token.bytes).decode("utf-8", "replace") == token.token

# Several choices with a seed: the same four texts each time.
def four():
    reply = client.chat.completions.create(
        model=model, messages=question, max_tokens=8, temperature=1.0, n=4, seed=1
    )
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    return [c.message.content for c in reply.choices]
assert four() == four()

try:
    client.chat.completions.create(model=model, messages=[], max_tokens=5)
    raise AssertionError("an empty message list was accepted")
except openai.BadRequestError as err:
    assert err.status_code == 400 and "at least one message" in str(err), err

# Several models: the adapter answers as its merged checkpoint does; an unknown model is a 404.
if adapter:
    reply = client.chat.completions.create(model=adapter, messages=question, max_tokens=20, temperature=0)
    assert reply.model == adapter and reply.choices[0].message.content == read(adapter_file), reply
try:
    client.chat.completions.create(model="gpt-4", messages=question, max_tokens=5)
    raise AssertionError("an unknown model was accepted")
except openai.NotFoundError as err:
    assert err.status_code == 404 and err.code == "model_not_found", err

print(f"openai {openai.__version__}: chat, streamed chat, completions, logprobs, n choices, models and errors all as expected")
