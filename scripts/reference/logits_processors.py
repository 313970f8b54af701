"""Hugging Face's logits processors (transformers' generation/logits_process.py), the anchor
of shared::generate's Sampler chain: the processed logits of fixed inputs, and greedy
generation with a repetition penalty on the tiny GPT-2 checkpoint.

Run through scripts/reference/generate.sh, which writes the JSON this prints to
shared/tests/fixtures/logits-processors.json.
"""
import json
import os
import sys

import torch
from transformers import GPT2LMHeadModel
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


def finite(t):
    """-inf as None, for JSON."""
    return [[None if v == float("-inf") else v for v in row] for row in t.tolist()]


def main():
    fixtures = sys.argv[1]
    generator = torch.Generator().manual_seed(21)
    logits = torch.randn(3, 40, generator=generator) * 3
    tokens = torch.randint(0, 40, (3, 7), generator=generator)
    values = {"torch": torch.__version__, "logits": logits.tolist(), "tokens": tokens.tolist()}
    cases = {
        "repetition_penalty_1.3": RepetitionPenaltyLogitsProcessor(1.3),
        "repetition_penalty_0.7": RepetitionPenaltyLogitsProcessor(0.7),
        "top_k_5": TopKLogitsWarper(5),
        "temperature_0.7": TemperatureLogitsWarper(0.7),
        "top_p_0.8": TopPLogitsWarper(0.8),
        "top_p_0.3": TopPLogitsWarper(0.3),
    }
    values["processed"] = {name: finite(p(tokens, logits.clone())) for name, p in cases.items()}
    model = GPT2LMHeadModel.from_pretrained(os.path.join(fixtures, "gpt2-tiny-hf")).eval()
    prompt = torch.tensor([[15496, 11, 314, 716]])
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=12, do_sample=False, repetition_penalty=1.5,
                             pad_token_id=50256, attention_mask=torch.ones_like(prompt))
    values["greedy_repetition_penalty_1.5"] = {"prompt": prompt.tolist(), "ids": out.tolist()}
    print(json.dumps(values, indent=1))


if __name__ == "__main__":
    main()
