"""Tiny GPT-2 checkpoints and their expected outputs, for the weight-loading conformance
tests of shared::weights (written to shared/tests/fixtures/):

- gpt2-tiny-hf/: a GPT2LMHeadModel with GPT-2's vocabulary saved with transformers'
  save_pretrained (names under "transformer.", head tied to wte, so no lm_head.weight in
  the file), with its losses on The Verdict (exercise 5.5's computation);
- gpt2-tiny-openai/: the layout of OpenAI's checkpoints on the hub (no "transformer."
  prefix, the causal-mask buffers h.N.attn.bias), with an untied lm_head.weight;
- book-tiny.pth: the book's GPTModel state_dict written with torch.save, and its logits.

Each expected.json follows the conventions of ../shared/fixtures/gpt2-tiny-a (see that
README), with the full last-position logits added. Needs transformers in the setup's Python
(generate.sh installs it). Run through scripts/reference/generate.sh.
"""
import json
from collections import OrderedDict
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).parent))
from gpt_init import GPTModel  # noqa: E402
from shared import gpt2_tokenizer  # noqa: E402
from ch05_pretraining import calc_loss_loader, create_dataloader_v1, verdict_text  # noqa: E402

OUT = Path(sys.argv[1])
PROMPTS_1000 = [[15, 11, 314, 716], [464, 268, 758, 218, 625], [40]]
PROMPTS_GPT2 = [[15496, 11, 314, 716], [6109, 3626, 6100, 345], [40]]  # "Hello, I am", "Every effort moves you", "I"


def expected_outputs(forward, vocab_size):
    prompts = []
    for ids in (PROMPTS_GPT2 if vocab_size > 1000 else PROMPTS_1000):
        x = torch.tensor([ids])
        with torch.no_grad():
            logits = forward(x)[0]
            last = logits[-1]
            loss = torch.nn.functional.cross_entropy(logits[:-1], x[0, 1:]).item() if len(ids) > 1 else None
            seq, max_logits = x, []
            for _ in range(20):
                step = forward(seq)[0, -1]
                max_logits.append(step.max().item())
                seq = torch.cat([seq, step.argmax().view(1, 1)], dim=1)
        prompts.append({"ids": ids, "last_logits_first8": last[:8].tolist(), "last_logits_argmax": int(last.argmax()),
                        "logits_sum_last": last.double().sum().item(), "greedy_20": seq[0, len(ids):].tolist(),
                        "greedy_20_max_logits": max_logits, "loss": loss})
        if vocab_size <= 1000:
            prompts[-1]["last_logits"] = last.tolist()
    return prompts


def hf_model(seed, tie, vocab_size, n_embd, n_head):
    config = GPT2Config(vocab_size=vocab_size, n_positions=32, n_embd=n_embd, n_layer=2, n_head=n_head,
                        tie_word_embeddings=tie, activation_function="gelu_new")
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # as gpt2-tiny-a: make norms and biases matter
        for name, p in model.named_parameters():
            if name.endswith(".bias") or ".ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return config, model


def write(folder, config, model, tensors, extra=None):
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    (folder / "generation_config.json").unlink(missing_ok=True)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    meta = {"config": config.to_dict() | {"transformers_version": None}, "torch": torch.__version__,
            "prompts": expected_outputs(lambda x: model(x).logits, config.vocab_size)} | (extra or {})
    (folder / "expected.json").write_text(json.dumps(meta, indent=1))


def main():
    config, model = hf_model(0, tie=True, vocab_size=50257, n_embd=8, n_head=2)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    # Exercise 5.5's computation: the mean loss over every batch of the book's loaders
    # (context 32 here, batch 2, seed 123) for The Verdict's training and validation parts.
    text = verdict_text()
    split = int(0.9 * len(text))
    torch.manual_seed(123)
    train = create_dataloader_v1(text[:split], 2, 32, 32, shuffle=True, drop_last=True)
    val = create_dataloader_v1(text[split:], 2, 32, 32, shuffle=False, drop_last=False)

    class Book(torch.nn.Module):  # the book's loss functions call model(inputs) for logits
        def forward(self, x):
            return model(x).logits

    with torch.no_grad():
        losses = {"train": calc_loss_loader(train, Book()), "val": calc_loss_loader(val, Book()), "context_length": 32}
    write(OUT / "gpt2-tiny-hf", config, model, state, {"verdict_losses": losses})

    config, model = hf_model(1, tie=False, vocab_size=1000, n_embd=24, n_head=4)
    state = {k.removeprefix("transformer."): v.contiguous() for k, v in model.state_dict().items()}
    for i in range(config.n_layer):  # the causal-mask buffers of OpenAI's original files
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(32, 32)).view(1, 1, 32, 32)
    write(OUT / "gpt2-tiny-openai", config, model, state)

    cfg = {"vocab_size": 1000, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
           "drop_rate": 0.1, "qkv_bias": True}
    torch.manual_seed(7)
    book = GPTModel(cfg).eval()
    torch.save(book.state_dict(), OUT / "book-tiny.pth")
    text = "I, 0.2"
    ids = gpt2_tokenizer().encode(text)
    assert max(ids) < cfg["vocab_size"], ids
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = book(x)
    (OUT / "book-tiny.json").write_text(json.dumps({"config": cfg, "text": text, "ids": ids,
                                                    "logits": logits[0].tolist()}, indent=1))

    # The seed of the torch.save fuzz test (shared/tests/fuzz_loaders.rs): a small archive
    # with a transposed (strided) tensor.
    torch.manual_seed(0)
    torch.save(OrderedDict([("tok_emb.weight", torch.randn(4, 3)), ("norm.scale", torch.ones(3)),
                            ("head.weight", torch.randn(3, 4).t())]), OUT / "tiny-state-dict.pth")


if __name__ == "__main__":
    main()
