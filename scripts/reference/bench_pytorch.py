"""The PyTorch side of scripts/bench-compare.sh: the book's code, timed the way
`ch05-pretraining bench-step` and `bench-generate` time ours, printed as JSON.

    bench_pytorch.py step [--batch-size 2] [--context-length 256] [--steps 5] [--autocast bf16]
        one training step of section 5.2 (listing 5.3's zero_grad, loss, backward, AdamW
        step), split into its phases, on The Verdict's training batches; the book's
        GPTModel with its LayerNorm and GELU modules (listings 4.2-4.7); --autocast bf16
        runs the forward pass and the loss under torch.autocast in bfloat16 (PyTorch's
        usual mixed precision on a GPU)
    bench_pytorch.py generate [--max-new-tokens 200] [--preallocated]
        greedy decoding of GPT-2 small after "Hello, I am" over a key/value cache as the
        book's KV-cache bonus code does it (gpt_with_kv_cache.py): each step feeds the new
        token only, appends its keys and values to the cache with torch.cat, and masks with
        a slice of the causal mask; --preallocated as its optimized variant does it
        (gpt_with_kv_cache_optimized.py): keys and values written into buffers allocated once,
        the mask computed from positions

Both take --device cpu|cuda|cuda:N (default cpu). The model is built on the CPU with seed 123
and moved, as the book does; on a GPU every phase is timed after torch.cuda.synchronize().
"""
import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
from ch05_pretraining import calc_loss_batch, create_dataloader_v1, verdict_text  # noqa: E402
from gpt_init import GPT_CONFIG_124M, GPTModel  # noqa: E402


class BookGELU(nn.Module):
    """Listing 4.3: the tanh approximation written out, as the book's GPTModel uses it."""

    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(torch.sqrt(torch.tensor(2.0 / torch.pi)) * (x + 0.044715 * torch.pow(x, 3))))


def book_model(cfg):
    model = GPTModel(cfg)
    for block in model.trf_blocks:
        block.ff.layers[1] = BookGELU()
    return model


def clock(device):
    """time.perf_counter once the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def matmul_gflops(rows, emb_dim, device, dtype=torch.float32):
    a = torch.randn(rows, emb_dim, device=device, dtype=dtype)
    b = torch.randn(emb_dim, 4 * emb_dim, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(5):
        start = clock(device)
        a @ b
        times.append(clock(device) - start)
    return 2 * rows * emb_dim * 4 * emb_dim / sorted(times)[2] / 1e9


def step(args):
    device = torch.device(args.device)
    cfg = dict(GPT_CONFIG_124M, context_length=args.context_length)
    text = verdict_text()
    split = int(0.9 * len(text))
    torch.manual_seed(123)
    loader = create_dataloader_v1(text[:split], args.batch_size, args.context_length, args.context_length,
                                  shuffle=True, drop_last=True)
    batches = list(loader)
    batches = [(inputs.to(device), targets.to(device)) for inputs, targets in batches]
    torch.manual_seed(123)
    model = book_model(cfg).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.autocast == "bf16" \
        else contextlib.nullcontext
    phases = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    losses = []
    for i in range(args.warmup + args.steps):
        inputs, targets = batches[i % len(batches)]
        start = clock(device)
        optimizer.zero_grad()
        zero = clock(device) - start
        start = clock(device)
        with autocast():
            loss = calc_loss_batch(inputs, targets, model, device)
        forward = clock(device) - start
        start = clock(device)
        loss.backward()
        backward = clock(device) - start
        start = clock(device)
        optimizer.step()
        update = clock(device) - start + zero
        losses.append(loss.item())
        if i >= args.warmup:
            phases["forward"] += forward
            phases["backward"] += backward
            phases["optimizer"] += update
    per_step = {k: v / args.steps for k, v in phases.items()}
    step_s = sum(per_step.values())
    tokens = args.batch_size * args.context_length
    dtype = torch.bfloat16 if args.autocast == "bf16" else torch.float32
    return {
        "side": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(), "device": device_name(device),
        "autocast": args.autocast, "batch_size": args.batch_size, "context_length": args.context_length,
        "steps": args.steps, "forward_s": per_step["forward"], "backward_s": per_step["backward"],
        "optimizer_s": per_step["optimizer"], "step_s": step_s, "tokens_per_s": tokens / step_s,
        "matmul_gflops": matmul_gflops(tokens, cfg["emb_dim"], device, dtype), "losses": losses,
    }


def device_name(device):
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def cached_forward(model, idx, cache, start, preallocated=False):
    """The book's KV-cache forward pass over the new tokens `idx` at positions start.."""
    n, device = idx.shape[1], idx.device
    x = model.tok_emb(idx) + model.pos_emb(torch.arange(start, start + n, device=device))
    for layer, block in enumerate(model.trf_blocks):
        att = block.att
        h = block.norm1(x)
        b = h.shape[0]
        split = lambda t: t.view(b, n, att.num_heads, att.head_dim).transpose(1, 2)
        q, k, v = split(att.W_query(h)), split(att.W_key(h)), split(att.W_value(h))
        if preallocated:
            if cache[layer] is None:
                slots = att.mask.shape[0]
                cache[layer] = (k.new_zeros(b, att.num_heads, slots, att.head_dim),
                                k.new_zeros(b, att.num_heads, slots, att.head_dim))
            cache[layer][0][:, :, start:start + n] = k
            cache[layer][1][:, :, start:start + n] = v
            keys, values = cache[layer][0][:, :, :start + n], cache[layer][1][:, :, :start + n]
            mask = (torch.arange(start, start + n, device=device).unsqueeze(1)
                    < torch.arange(start + n, device=device).unsqueeze(0))
        else:
            if cache[layer] is None:
                cache[layer] = (k, v)
            else:
                cache[layer] = (torch.cat([cache[layer][0], k], dim=2), torch.cat([cache[layer][1], v], dim=2))
            keys, values = cache[layer]
            mask = att.mask.bool()[start:start + n, :keys.shape[2]]
        scores = q @ keys.transpose(2, 3)
        scores.masked_fill_(mask, -torch.inf)
        weights = att.dropout(torch.softmax(scores / att.head_dim ** 0.5, dim=-1))
        context = (weights @ values).transpose(1, 2).contiguous().view(b, n, att.d_out)
        x = x + block.drop_shortcut(att.out_proj(context))
        x = x + block.drop_shortcut(block.ff(block.norm2(x)))
    return model.out_head(model.final_norm(x))


def generate(args):
    device = torch.device(args.device)
    torch.manual_seed(123)
    model = book_model(GPT_CONFIG_124M).to(device).eval()
    prompt = torch.tensor([[15496, 11, 314, 716]], device=device)  # "Hello, I am"

    def decode(new_tokens):
        idx = prompt
        with torch.no_grad():
            cache = [None] * len(model.trf_blocks)
            logits = cached_forward(model, idx, cache, 0, args.preallocated)
            for _ in range(new_tokens):
                next_id = logits[:, -1].argmax(dim=-1, keepdim=True)
                idx = torch.cat([idx, next_id], dim=1)
                logits = cached_forward(model, next_id, cache, idx.shape[1] - 1, args.preallocated)
        return idx

    decode(min(8, args.max_new_tokens))  # an untimed warm-up, as bench-generate does
    start = clock(device)
    idx = decode(args.max_new_tokens)
    seconds = clock(device) - start
    return {
        "side": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(), "device": device_name(device),
        "new_tokens": args.max_new_tokens, "preallocated": args.preallocated, "seconds": seconds,
        "tokens_per_s": args.max_new_tokens / seconds, "ids": idx[0].tolist(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("step")
    s.add_argument("--batch-size", type=int, default=2)
    s.add_argument("--context-length", type=int, default=256)
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--warmup", type=int, default=1)
    s.add_argument("--autocast", choices=["none", "bf16"], default="none")
    g = sub.add_parser("generate")
    g.add_argument("--max-new-tokens", type=int, default=200)
    g.add_argument("--preallocated", action="store_true")
    for command in (s, g):
        command.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(json.dumps(step(args) if args.command == "step" else generate(args), indent=1))


if __name__ == "__main__":
    main()
