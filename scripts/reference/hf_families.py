"""Tiny random checkpoints of today's open-weight families (Llama 3.2, Qwen3, Gemma 3) in
the Hugging Face layout, with transformers' outputs for them, for issue 31's parity tests.

For each family this writes, under OUT/<family>/:
- config.json, generation_config.json and the weights as `save_pretrained` writes them
  (Llama: sharded float32 with model.safetensors.index.json; Qwen3: one float32 file with
  an untied head; Gemma 3: one bfloat16 file);
- tokenizer.json: a small byte-level BPE trained on The Verdict with the family's special
  tokens (Llama and Gemma add their BOS through the post-processor), tokenizer_config.json,
  and a chat template (Llama and Qwen3 in tokenizer_config.json, Gemma 3 in
  chat_template.jinja, so both places are read);
- reference.json: token ids from the `tokenizers` package, chat templates as
  `apply_chat_template` renders them, next-token logits (eager attention, float32, weights
  read back from the saved files) for prompts longer than the sliding window, and 16 greedy
  tokens.

The norm weights are drawn away from their initial values, so that a wrong norm form (Gemma's
`1 + weight`, RMS instead of layer norm) changes the logits. Run from the repository root:
    python scripts/reference/hf_families.py shared/tests/fixtures/hf
"""

import json
import os
import sys

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERDICT = open(os.path.join(ROOT, "datasets", "the-verdict.txt"), encoding="utf-8").read()

LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
QWEN_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

FAMILIES = {
    "llama": {
        "special": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "bos": "<|begin_of_text|>",
        "eos": ["<|end_of_text|>", "<|eot_id|>"],
        "template": LLAMA_TEMPLATE,
        "template_file": False,
    },
    "qwen3": {
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "bos": None,
        "eos": ["<|im_end|>", "<|endoftext|>"],
        "template": QWEN_TEMPLATE,
        "template_file": False,
    },
    "gemma3": {
        "special": ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"],
        "bos": "<bos>",
        "eos": ["<eos>", "<end_of_turn>"],
        "template": GEMMA_TEMPLATE,
        "template_file": True,
    },
}

PROMPTS = [
    "I had always thought Jack Gisburn rather a cheap genius--though a good fellow enough",
    "It was no great surprise to me to hear that, in the height of his glory, he had dropped his painting",
]
TOKENIZER_TEXTS = [
    "Héllo wörld — ünïcödé ✓ 日本語",
    "spaces   and\ttabs\n\n\nnewlines      end",
    "a <|im_start|> b <start_of_turn> c <|eot_id|> d <bos> e",
    "",
]
CONVERSATION = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of  Italy?  "},
]


def train_tokenizer(family):
    spec = FAMILIES[family]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=256 + 200,
        special_tokens=spec["special"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([VERDICT], trainer)
    if spec["bos"] is not None:
        bos = spec["bos"]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def model_for(family, tokenizer):
    ids = {token: tokenizer.token_to_id(token) for token in FAMILIES[family]["special"]}
    common = dict(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        attention_dropout=0.0,
        # Wider than the usual 0.02, so that the logits differ enough for greedy decoding to
        # wander rather than repeat one token.
        initializer_range=0.2,
    )
    if family == "llama":
        config = LlamaConfig(
            **{**common, "max_position_embeddings": 512},
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 256,
            },
            bos_token_id=ids["<|begin_of_text|>"],
            eos_token_id=[ids["<|end_of_text|>"], ids["<|eot_id|>"]],
        )
        model = LlamaForCausalLM(config)
    elif family == "qwen3":
        config = Qwen3Config(
            **common,
            head_dim=16,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
        )
        model = Qwen3ForCausalLM(config)
    else:
        config = Gemma3TextConfig(
            **common,
            head_dim=16,
            rms_norm_eps=1e-6,
            query_pre_attn_scalar=24,
            sliding_window=8,
            layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1000000.0},
            },
            final_logit_softcapping=5.0,
            tie_word_embeddings=True,
            pad_token_id=ids["<pad>"],
            bos_token_id=ids["<bos>"],
            eos_token_id=[ids["<eos>"], ids["<end_of_turn>"]],
        )
        model = Gemma3ForCausalLM(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_(torch.randn_like(parameter) * 0.3 + (0.0 if family == "gemma3" else 1.0))
    return model.eval()


def save(family, tokenizer, model, out):
    spec = FAMILIES[family]
    os.makedirs(out, exist_ok=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=spec["bos"],
        eos_token=spec["eos"][0],
        pad_token="<pad>" if family == "gemma3" else None,
    )
    fast.chat_template = spec["template"]
    fast.save_pretrained(out)
    if not spec["template_file"]:
        # As transformers 4.x wrote it: the template inside tokenizer_config.json.
        os.remove(os.path.join(out, "chat_template.jinja"))
        edit_json(os.path.join(out, "tokenizer_config.json"), lambda config: config.update(chat_template=spec["template"]))
    if family == "llama":
        model.save_pretrained(out, max_shard_size="200KB")
    elif family == "gemma3":
        model.to(torch.bfloat16).save_pretrained(out)
    else:
        model.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    if family == "llama":
        # Llama's config as transformers 4.x wrote it (rope_theta and rope_scaling); the others
        # keep 5.x's rope_parameters and layer_types.
        def to_4x(config):
            rope = config.pop("rope_parameters")
            config["rope_theta"] = rope.pop("rope_theta")
            config["rope_scaling"] = rope

        edit_json(os.path.join(out, "config.json"), to_4x)


def edit_json(path, change):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    change(data)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)


def reference(family, out):
    tokenizer = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    fast = PreTrainedTokenizerFast.from_pretrained(out)
    cls = {"llama": LlamaForCausalLM, "qwen3": Qwen3ForCausalLM, "gemma3": Gemma3ForCausalLM}[family]
    model = cls.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    result = {"tokenizer": [], "chat": {}, "prompts": []}
    for text in TOKENIZER_TEXTS:
        encoding = tokenizer.encode(text)
        result["tokenizer"].append({"text": text, "ids": encoding.ids, "decoded": tokenizer.decode(encoding.ids)})
    for generation_prompt in (False, True):
        rendered = fast.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=generation_prompt)
        ids = fast.apply_chat_template(CONVERSATION, tokenize=True, add_generation_prompt=generation_prompt)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        result["chat"]["with_generation_prompt" if generation_prompt else "without_generation_prompt"] = {
            "text": rendered,
            "ids": list(ids),
        }
    result["conversation"] = CONVERSATION
    for prompt in PROMPTS:
        ids = tokenizer.encode(prompt).ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
            greedy, context = [], list(ids)
            for _ in range(16):
                token = int(model(torch.tensor([context])).logits[0, -1].argmax())
                greedy.append(token)
                context.append(token)
        result["prompts"].append(
            {
                "text": prompt,
                "ids": ids,
                "last_logits": [round(float(v), 6) for v in logits[-1]],
                "first_logits": [round(float(v), 6) for v in logits[0]],
                "greedy": greedy,
            }
        )
    return result


def main():
    out_root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "shared", "tests", "fixtures", "hf")
    torch.manual_seed(123)
    for family in FAMILIES:
        out = os.path.join(out_root, family)
        tokenizer = train_tokenizer(family)
        save(family, tokenizer, model_for(family, tokenizer), out)
        with open(os.path.join(out, "reference.json"), "w", encoding="utf-8") as f:
            json.dump(reference(family, out), f, ensure_ascii=False, indent=1)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
