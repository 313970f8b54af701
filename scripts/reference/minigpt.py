"""The chapter 21 walk-through in PyTorch, for the speed and loss comparison in
ch21-advanced/README.md: the same character-level mini-GPT as `cargo run --release -p
ch21-advanced` (4 layers, 4 heads, width 128, block 64, batch 12, no dropout, the book's
GPT-2 block without QKV bias, an untied output head, GPT-2's initialisation), trained the
same way (2,000 AdamW steps,
beta2 0.99, weight decay 0.1 on matrices and embeddings, 100 warmup steps then a cosine from
1e-3 to 1e-4, gradient clipping at 1.0 after the warmup, an evaluation of 20 batches every
250 steps) on the same 90/10 split of tiny Shakespeare, then the validation loss over 200
batches.

`--nanogpt-block` switches to nanoGPT's block (no biases, exact GELU) and `--tie` ties the
head to the token embedding (as nanoGPT does), to show what those choices are worth.
Prints one JSON line at the end.

    python scripts/reference/minigpt.py [--nanogpt-block] [--tie] [--iters N] [--seed S]
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from shared import data_file  # noqa: E402


class Block(nn.Module):
    def __init__(self, width, heads, bias, gelu):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, bias=bias)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out_proj = nn.Linear(width, width, bias=bias)
        self.norm2 = nn.LayerNorm(width, bias=bias)
        self.ff = nn.Sequential(nn.Linear(width, 4 * width, bias=bias), gelu, nn.Linear(4 * width, width, bias=bias))

    def attention(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, c))

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.ff(self.norm2(x))


class MiniGpt(nn.Module):
    def __init__(self, vocab, block, width, heads, layers, nanogpt_block, tie):
        super().__init__()
        gelu = nn.GELU() if nanogpt_block else nn.GELU(approximate="tanh")
        bias = not nanogpt_block
        self.tok_emb = nn.Embedding(vocab, width)
        self.pos_emb = nn.Embedding(block, width)
        self.blocks = nn.Sequential(*[Block(width, heads, bias, gelu) for _ in range(layers)])
        self.final_norm = nn.LayerNorm(width, bias=bias)
        self.out_head = nn.Linear(width, vocab, bias=False)
        if tie:
            self.out_head.weight = self.tok_emb.weight
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("out_proj.weight", "ff.2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids):
        positions = torch.arange(ids.shape[1])
        x = self.blocks(self.tok_emb(ids) + self.pos_emb(positions))
        return self.out_head(self.final_norm(x))


def lr_at(step, args):
    initial = args.lr / (args.warmup + 1)
    if step < args.warmup:
        return initial + step * (args.lr - initial) / args.warmup
    progress = min((step - args.warmup) / (args.iters - args.warmup), 1.0)
    return args.min_lr + (args.lr - args.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nanogpt-block", action="store_true")
    parser.add_argument("--tie", action="store_true")
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--min-lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    block, batch, eval_interval, eval_iters = 64, 12, 250, 20

    text = data_file("tinyshakespeare.txt").read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    split = int(len(data) * 0.9)
    splits = {"train": data[:split], "val": data[split:]}

    def get_batch(name):
        part = splits[name]
        starts = torch.randint(len(part) - block, (batch,))
        x = torch.stack([part[i : i + block] for i in starts])
        y = torch.stack([part[i + 1 : i + 1 + block] for i in starts])
        return x, y

    @torch.no_grad()
    def val_loss(batches):
        model.eval()
        losses = [F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() for x, y in map(get_batch, ["val"] * batches)]
        model.train()
        return sum(losses) / len(losses)

    torch.manual_seed(args.seed)
    model = MiniGpt(len(chars), block, 128, 4, 4, args.nanogpt_block, args.tie)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.99))

    start = time.perf_counter()
    for step in range(args.iters):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args)
        x, y = get_batch("train")
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step >= args.warmup:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % eval_interval == 0:
            print(f"step {step + 1}: train {loss.item():.3f}, val {val_loss(eval_iters):.3f}", flush=True)
    seconds = time.perf_counter() - start
    final = val_loss(200)
    tokens = args.iters * batch * block
    result = {
        "block": "nanogpt" if args.nanogpt_block else "gpt2",
        "tied": args.tie,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "final_val_loss": round(final, 4),
        "train_seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / seconds),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
