"""Chat-template constructs of today's instruction models, rendered by transformers.

The real templates of Llama 3.2, Qwen3 and Gemma 3 (not copied here) use more of Jinja than
the fixtures' short templates: `strftime_now` and a default date, `tools` tested against
none, the system message cut off with `messages[1:]`, a namespace updated in a reversed loop
(`messages[::-1]`, `loop.index0`), `is string`, `is defined`, Python string methods
(`startswith`, `split`, `lstrip`, `rstrip`, `strip`), `in`, inline `if ... else`,
`raise_exception` when roles do not alternate, and `break`. The template below, written for
this project, uses each of them; the conversations are rendered by transformers'
`apply_chat_template` and written to `shared/tests/fixtures/hf/template-features.json`, which
`shared/tests/families.rs` compares with our renderer (`tokenizer::ChatTemplate`).

Run from `scripts/reference/generate.sh` (needs transformers, CPU only).
"""

import json
import os
import sys
from datetime import datetime

from transformers import PreTrainedTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "shared", "tests", "fixtures", "hf")

TEMPLATE = """{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] | trim %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\nToday Date: " + date_string + "\\n" }}
{%- if tools is not none %}
    {{- "Tools: " + tools | tojson(indent=4) + "\\n" }}
{%- endif %}
{{- system_message + "<|eot_id|>" }}
{%- set ns = namespace(multi_step=true, last_query_index=loop_messages|length - 1) %}
{%- for message in loop_messages[::-1] %}
    {%- set index = (loop_messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif %}
    {%- set role = "model" if message['role'] == 'assistant' else message['role'] %}
    {%- set content = message.content %}
    {%- if message.role == "assistant" %}
        {%- set reasoning = '' %}
        {%- if '</think>' in content %}
            {%- set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index and (loop.last or reasoning) %}
            {{- '<|im_start|>' + role + '\\n<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
        {%- else %}
            {{- '<|im_start|>' + role + '\\n' + content }}
        {%- endif %}
    {%- else %}
        {{- '<|im_start|>' + role + '\\n' + content | trim }}
    {%- endif %}
    {{- '<|im_end|>\\n' }}
    {%- if loop.index0 >= 5 %}
        {%- break %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>model\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}
"""

CASES = [
    {"messages": [{"role": "user", "content": "  Hello, wörld ✓  "}], "add_generation_prompt": True},
    {
        "messages": [
            {"role": "system", "content": " Answer briefly.\n"},
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\n4."},
            {"role": "user", "content": "And 3 + 3?"},
        ],
        "add_generation_prompt": True,
    },
    {
        "messages": [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
        ],
        "add_generation_prompt": False,
    },
    {
        "messages": [{"role": "user", "content": f"Turn {i}."} if i % 2 == 0 else {"role": "assistant", "content": f"Reply {i}."} for i in range(9)],
        "add_generation_prompt": True,
    },
    {
        "messages": [
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": "Hello."},
            {"role": "assistant", "content": "Again."},
        ],
        "add_generation_prompt": True,
    },
]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(FIXTURE, "template-features.json")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(os.path.join(FIXTURE, "llama"))
    cases = []
    for case in CASES:
        try:
            rendered = {
                "text": tokenizer.apply_chat_template(
                    case["messages"],
                    chat_template=TEMPLATE,
                    tokenize=False,
                    add_generation_prompt=case["add_generation_prompt"],
                )
            }
        except Exception as err:  # the template's raise_exception
            rendered = {"error": str(err)}
        cases.append({**case, **rendered})
    result = {
        "template": TEMPLATE,
        "bos_token": tokenizer.bos_token,
        # The date strftime_now gave, which the test replaces by the date it renders on.
        "date": datetime.now().strftime("%d %b %Y"),
        "cases": cases,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
