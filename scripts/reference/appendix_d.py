"""Appendix D's training loop as the book's companion notebook runs it (appendix-D.ipynb):
a linear warmup of the learning rate over the first 20 % of the steps, half a cosine down to
the minimum afterwards, and the gradients clipped to a global norm of 1.0 from the end of the
warmup on (`global_step >= warmup_steps`, as the notebook has it now), on chapter 5's data,
model and evaluation (`ch05_pretraining.py`, whose functions follow the book's code).

    python appendix_d.py          # a tiny model (tests: ch05-pretraining/tests/fixtures/appendix-d-reference.json)
    python appendix_d.py --full   # the appendix's run: GPT-2 small at 256 tokens, 15 epochs (about 20 minutes on 2 cores)

Prints JSON: every step's learning rate, the logged losses (every 5 steps on one batch of each
loader) and the sample after every epoch.
"""

import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ch05_pretraining import (  # noqa: E402
    GPTModel,
    calc_loss_batch,
    create_dataloader_v1,
    evaluate_model,
    generate_text_simple,
    machine,
    text_to_token_ids,
    token_ids_to_text,
    verdict_text,
)
from shared import gpt2_tokenizer  # noqa: E402


def train_model(model, train_loader, val_loader, optimizer, n_epochs, eval_freq, eval_iter, start_context,
                tokenizer, warmup_steps, initial_lr, min_lr, max_norm, log):
    peak_lr = optimizer.param_groups[0]["lr"]
    total_steps = len(train_loader) * n_epochs
    increment = (peak_lr - initial_lr) / warmup_steps
    tokens_seen, global_step = 0, -1
    for epoch in range(n_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            global_step += 1
            if global_step < warmup_steps:
                lr = initial_lr + global_step * increment
            else:
                progress = (global_step - warmup_steps) / (total_steps - warmup_steps)
                lr = min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
            for group in optimizer.param_groups:
                group["lr"] = lr
            log["learning_rates"].append(lr)
            loss = calc_loss_batch(input_batch, target_batch, model)
            loss.backward()
            if global_step >= warmup_steps:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm)
            optimizer.step()
            tokens_seen += input_batch.numel()
            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, eval_iter)
                log["evaluations"].append({"epoch": epoch + 1, "step": global_step, "train_loss": train_loss,
                                           "val_loss": val_loss, "tokens_seen": tokens_seen})
                print(f"Ep {epoch+1} (Iter {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}",
                      file=sys.stderr)
        model.eval()
        encoded = text_to_token_ids(start_context, tokenizer)
        token_ids = generate_text_simple(model, encoded, 50, model.pos_emb.weight.shape[0])
        sample = token_ids_to_text(token_ids, tokenizer).replace("\n", " ")
        log["samples"].append(sample)
        print(sample, file=sys.stderr)


def run(cfg, batch_size, n_epochs, peak_lr, initial_lr, min_lr, eval_freq, eval_iter):
    """The appendix's cells in order: the loaders (seed 123), then a seed-123 model, AdamW with
    weight decay 0.1 at the peak learning rate, and the loop with a 20 % warmup."""
    text = verdict_text()
    split_idx = int(0.90 * len(text))
    ctx = cfg["context_length"]
    torch.manual_seed(123)
    train_loader = create_dataloader_v1(text[:split_idx], batch_size, ctx, ctx, shuffle=True, drop_last=True)
    val_loader = create_dataloader_v1(text[split_idx:], batch_size, ctx, ctx, shuffle=False, drop_last=False)
    warmup_steps = int(0.2 * len(train_loader) * n_epochs)
    torch.manual_seed(123)
    model = GPTModel(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.1)
    log = {"config": cfg, "batch_size": batch_size, "epochs": n_epochs, "peak_lr": peak_lr, "initial_lr": initial_lr,
           "min_lr": min_lr, "warmup_steps": warmup_steps, "train_batches": len(train_loader),
           "learning_rates": [], "evaluations": [], "samples": []}
    start = time.time()
    train_model(model, train_loader, val_loader, optimizer, n_epochs, eval_freq, eval_iter, "Every effort moves you",
                gpt2_tokenizer(), warmup_steps, initial_lr, min_lr, 1.0, log)
    log["train_seconds"] = time.time() - start
    return log


def main():
    if "--full" in sys.argv:
        cfg = {"vocab_size": 50257, "context_length": 256, "emb_dim": 768, "n_heads": 12, "n_layers": 12,
               "drop_rate": 0.1, "qkv_bias": False}
        log = run(cfg, batch_size=2, n_epochs=15, peak_lr=0.001, initial_lr=1e-5, min_lr=1e-5, eval_freq=5,
                  eval_iter=1)
        log["torch"] = torch.__version__
        log["threads"] = torch.get_num_threads()
        log["machine"] = machine()
    else:
        cfg = {"vocab_size": 50257, "context_length": 32, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
               "drop_rate": 0.1, "qkv_bias": False}
        log = run(cfg, batch_size=4, n_epochs=2, peak_lr=0.001, initial_lr=1e-5, min_lr=1e-5, eval_freq=5,
                  eval_iter=1)
        del log["train_seconds"]
    print(json.dumps(log, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", torch.get_num_threads())))
    main()
