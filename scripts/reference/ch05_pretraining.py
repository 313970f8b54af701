"""PyTorch reference values for chapter 5: the book's pretraining code (listings 5.1-5.5,
`generate`, `print_sampled_tokens`), run on the CPU with the setup's torch.

    ch05_pretraining.py            the quick values the tests pin (a tiny model's training
                                   run, losses, sampling), printed as JSON
    ch05_pretraining.py --full     the chapter's main run (GPT-2 small shape, context 256,
                                   10 epochs on The Verdict): what `cargo run --release -p
                                   ch05-pretraining` reproduces; takes several minutes
    ... --full --device cuda       the same run on a GPU, as the book runs it there (the model
                                   built on the CPU and moved, the batches moved one by one):
                                   the reference of `ch05-pretraining check-run --reference`
    ... --full --epochs N          fewer (or more) epochs than the book's 10

Run through scripts/reference/generate.sh (quick values only).
"""
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpt_init import GPTModel  # noqa: E402
from shared import data_file, gpt2_tokenizer  # noqa: E402

# Where the model and the batches go (--device).
DEVICE = torch.device("cpu")



def verdict_text():
    return data_file("the-verdict.txt").read_text(encoding="utf-8")


class GPTDatasetV1(torch.utils.data.Dataset):
    def __init__(self, txt, tokenizer, max_length, stride):
        self.input_ids, self.target_ids = [], []
        token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
        for i in range(0, len(token_ids) - max_length, stride):
            self.input_ids.append(torch.tensor(token_ids[i:i + max_length]))
            self.target_ids.append(torch.tensor(token_ids[i + 1:i + max_length + 1]))

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, idx):
        return self.input_ids[idx], self.target_ids[idx]


def create_dataloader_v1(txt, batch_size, max_length, stride, shuffle, drop_last):
    dataset = GPTDatasetV1(txt, gpt2_tokenizer(), max_length, stride)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                                       drop_last=drop_last, num_workers=0)


def text_to_token_ids(text, tokenizer):
    return torch.tensor(tokenizer.encode(text, allowed_special={"<|endoftext|>"})).unsqueeze(0).to(DEVICE)


def token_ids_to_text(token_ids, tokenizer):
    return tokenizer.decode(token_ids.squeeze(0).tolist())


def generate_text_simple(model, idx, max_new_tokens, context_size):
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]
        with torch.no_grad():
            logits = model(idx_cond)
        idx_next = torch.argmax(torch.softmax(logits[:, -1, :], dim=-1), dim=-1, keepdim=True)
        idx = torch.cat((idx, idx_next), dim=1)
    return idx


def generate(model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None, eos_id=None):
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]
        with torch.no_grad():
            logits = model(idx_cond)
        logits = logits[:, -1, :]
        if top_k is not None:
            top_logits, _ = torch.topk(logits, top_k)
            min_val = top_logits[:, -1]
            logits = torch.where(logits < min_val, torch.tensor(float("-inf")), logits)
        if temperature > 0.0:
            probs = torch.softmax(logits / temperature, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)
        else:
            idx_next = torch.argmax(logits, dim=-1, keepdim=True)
        if idx_next == eos_id:
            break
        idx = torch.cat((idx, idx_next), dim=1)
    return idx


def calc_loss_batch(input_batch, target_batch, model, device=None):
    """Listing 5.2's, which moves the batch to `device` (here --device unless given)."""
    device = device or DEVICE
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), target_batch.flatten())


def calc_loss_loader(data_loader, model, num_batches=None):
    total_loss = 0.
    if len(data_loader) == 0:
        return float("nan")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i < num_batches:
            total_loss += calc_loss_batch(input_batch, target_batch, model).item()
        else:
            break
    return total_loss / num_batches


def evaluate_model(model, train_loader, val_loader, eval_iter):
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, num_batches=eval_iter)
        val_loss = calc_loss_loader(val_loader, model, num_batches=eval_iter)
    model.train()
    return train_loss, val_loss


def train_model_simple(model, train_loader, val_loader, optimizer, num_epochs, eval_freq, eval_iter,
                       start_context, tokenizer, log):
    tokens_seen, global_step = 0, -1
    for epoch in range(num_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            loss = calc_loss_batch(input_batch, target_batch, model)
            loss.backward()
            optimizer.step()
            tokens_seen += input_batch.numel()
            global_step += 1
            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, eval_iter)
                log["evaluations"].append({"epoch": epoch + 1, "step": global_step, "train_loss": train_loss,
                                           "val_loss": val_loss, "tokens_seen": tokens_seen})
                print(f"Ep {epoch+1} (Step {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}",
                      file=sys.stderr)
        model.eval()
        context_size = model.pos_emb.weight.shape[0]
        encoded = text_to_token_ids(start_context, tokenizer)
        token_ids = generate_text_simple(model, encoded, 50, context_size)
        sample = token_ids_to_text(token_ids, tokenizer).replace("\n", " ")
        log["samples"].append(sample)
        print(sample, file=sys.stderr)
        model.train()


def pretraining_run(cfg, text, batch_size, num_epochs, eval_freq, eval_iter, start_context):
    """Section 5.2 as the book runs it: initial losses of a seed-123 model, then training."""
    tokenizer = gpt2_tokenizer()
    split_idx = int(0.90 * len(text))
    torch.manual_seed(123)
    model = GPTModel(cfg).to(DEVICE)
    model.eval()
    torch.manual_seed(123)
    ctx = cfg["context_length"]
    train_loader = create_dataloader_v1(text[:split_idx], batch_size, ctx, ctx, shuffle=True, drop_last=True)
    val_loader = create_dataloader_v1(text[split_idx:], batch_size, ctx, ctx, shuffle=False, drop_last=False)
    log = {"train_batches": len(train_loader), "val_batches": len(val_loader), "evaluations": [], "samples": []}
    torch.manual_seed(123)
    with torch.no_grad():
        log["initial_train_loss"] = calc_loss_loader(train_loader, model)
        log["initial_val_loss"] = calc_loss_loader(val_loader, model)
    torch.manual_seed(123)
    model = GPTModel(cfg).to(DEVICE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    start = time.time()
    train_model_simple(model, train_loader, val_loader, optimizer, num_epochs, eval_freq, eval_iter,
                       start_context, tokenizer, log)
    log["train_seconds"] = time.time() - start
    state = model.state_dict()
    log["final_weight_sums"] = {k: state[k].double().sum().item() for k in ["tok_emb.weight", "out_head.weight"]}
    # Section 5.3.3: temperature 1.4 and top-k 25 with the trained model.
    torch.manual_seed(123)
    ids = generate(model.eval(), text_to_token_ids(start_context, tokenizer), 15, ctx, temperature=1.4, top_k=25)
    log["top_k_25_temperature_1.4"] = ids[0].tolist()
    return log


def print_sampled_tokens(probas, vocab, n=1000):
    torch.manual_seed(123)
    sample = [torch.multinomial(probas, num_samples=1).item() for _ in range(n)]
    counts = torch.bincount(torch.tensor(sample), minlength=len(vocab))
    return {word: int(c) for word, c in zip(vocab, counts)}


def quick():
    out = {"torch": torch.__version__}
    tokenizer = gpt2_tokenizer()
    # 5.1.2: the loss of two short examples under the untrained GPT-2 small (context 256).
    cfg = {"vocab_size": 50257, "context_length": 256, "emb_dim": 768, "n_heads": 12, "n_layers": 12,
           "drop_rate": 0.1, "qkv_bias": False}
    torch.manual_seed(123)
    model = GPTModel(cfg).eval()
    ids = generate_text_simple(model, text_to_token_ids("Every effort moves you", tokenizer), 10, 256)
    out["untrained_sample_ids"] = ids[0].tolist()
    inputs = torch.tensor([[16833, 3626, 6100], [40, 1107, 588]])
    targets = torch.tensor([[3626, 6100, 345], [1107, 588, 11311]])
    with torch.no_grad():
        logits = model(inputs)
    probas = torch.softmax(logits, dim=-1)
    out["target_probas"] = [probas[i, [0, 1, 2], targets[i]].tolist() for i in range(2)]
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    out["example_loss"], out["example_perplexity"] = loss.item(), torch.exp(loss).item()
    # 5.3.1 and exercise 5.1: sampling the toy vocabulary.
    vocab = ["closer", "every", "effort", "forward", "inches", "moves", "pizza", "toward", "you"]
    logits = torch.tensor([4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79])
    out["toy_counts"] = {str(t): print_sampled_tokens(torch.softmax(logits / t, dim=0), vocab)
                         for t in [1, 0.1, 5]}
    out["toy_probas"] = {str(t): torch.softmax(logits / t, dim=0).tolist() for t in [1, 0.1, 5]}
    torch.manual_seed(123)
    out["toy_multinomial_first"] = torch.multinomial(torch.softmax(logits, dim=0), num_samples=1).item()
    # Top-k sampling on the untrained model: the decoding function with every option.
    torch.manual_seed(123)
    prompt = text_to_token_ids("Every effort moves you", tokenizer)
    out["untrained_top_k_3_temperature_1.5"] = generate(model, prompt, 12, 256, temperature=1.5, top_k=3)[0].tolist()
    # A tiny model's training run (the tests' parity check for the loop, AdamW and the loader).
    tiny = {"vocab_size": 50257, "context_length": 32, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
            "drop_rate": 0.1, "qkv_bias": False}
    out["tiny_run"] = pretraining_run(tiny, verdict_text(), 4, 2, 5, 2, "Every effort moves you")
    del out["tiny_run"]["train_seconds"]
    print(json.dumps(out, indent=1))


def full(epochs=10):
    cfg = {"vocab_size": 50257, "context_length": 256, "emb_dim": 768, "n_heads": 12, "n_layers": 12,
           "drop_rate": 0.1, "qkv_bias": False}
    log = pretraining_run(cfg, verdict_text(), 2, epochs, 5, 5, "Every effort moves you")
    log["config"] = cfg
    log["torch"] = torch.__version__
    log["threads"] = torch.get_num_threads()
    log["machine"] = machine()
    log["device"] = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu"
    print(json.dumps(log, indent=1))


def machine():
    """The CPU the reference ran on (its model name, as /proc/cpuinfo gives it) and the OS."""
    import platform
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", torch.get_num_threads())))
    if "--device" in sys.argv:
        DEVICE = torch.device(sys.argv[sys.argv.index("--device") + 1])
    epochs = int(sys.argv[sys.argv.index("--epochs") + 1]) if "--epochs" in sys.argv else 10
    full(epochs) if "--full" in sys.argv else quick()
