"""PyTorch reference values for chapter 7: the book's instruction fine-tuning code
(sections 7.2-7.7 and the exercise 7.1/7.2 variants), run on the CPU with the setup's torch,
with a tiny randomly initialised model in place of GPT-2 medium. Printed as JSON; run
through scripts/reference/generate.sh.
"""
import json
import sys
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).parent))
from ch05_pretraining import calc_loss_loader, generate, text_to_token_ids, token_ids_to_text  # noqa: E402
from ch05_pretraining import train_model_simple  # noqa: E402
from gpt_init import GPTModel  # noqa: E402
from shared import data_file, gpt2_tokenizer  # noqa: E402



def instruction_data():
    return json.loads(data_file("instruction-data.json").read_text(encoding="utf-8"))


def format_input(entry):
    instruction_text = (
        f"Below is an instruction that describes a task. "
        f"Write a response that appropriately completes the request."
        f"\n\n### Instruction:\n{entry['instruction']}"
    )
    input_text = f"\n\n### Input:\n{entry['input']}" if entry["input"] else ""
    return instruction_text + input_text


def format_input_phi3(entry):
    instruction_text = f"<|user|>\n{entry['instruction']}"
    input_text = f"\n{entry['input']}" if entry["input"] else ""
    return instruction_text + input_text


def split(data):
    train_portion = int(len(data) * 0.85)
    test_portion = int(len(data) * 0.1)
    return (data[:train_portion], data[train_portion:train_portion + test_portion],
            data[train_portion + test_portion:])


class InstructionDataset(Dataset):
    def __init__(self, data, tokenizer):
        self.data = data
        self.encoded_texts = []
        for entry in data:
            full_text = format_input(entry) + f"\n\n### Response:\n{entry['output']}"
            self.encoded_texts.append(tokenizer.encode(full_text))

    def __getitem__(self, index):
        return self.encoded_texts[index]

    def __len__(self):
        return len(self.data)


def custom_collate_fn(batch, pad_token_id=50256, ignore_index=-100, allowed_max_length=None, device="cpu"):
    batch_max_length = max(len(item) + 1 for item in batch)
    inputs_lst, targets_lst = [], []
    for item in batch:
        new_item = item.copy()
        new_item += [pad_token_id]
        padded = new_item + [pad_token_id] * (batch_max_length - len(new_item))
        inputs = torch.tensor(padded[:-1])
        targets = torch.tensor(padded[1:])
        mask = targets == pad_token_id
        indices = torch.nonzero(mask).squeeze()
        if indices.numel() > 1:
            targets[indices[1:]] = ignore_index
        if allowed_max_length is not None:
            inputs = inputs[:allowed_max_length]
            targets = targets[:allowed_max_length]
        inputs_lst.append(inputs)
        targets_lst.append(targets)
    return torch.stack(inputs_lst).to(device), torch.stack(targets_lst).to(device)


def masked_collate_fn(batch, pad_token_id=50256, ignore_index=-100, allowed_max_length=None, device="cpu"):
    """Exercise 7.2: items are (instruction_length, tokens)."""
    batch_max_length = max(len(item) + 1 for instruction_length, item in batch)
    inputs_lst, targets_lst = [], []
    for instruction_length, item in batch:
        new_item = item.copy()
        new_item += [pad_token_id]
        padded = new_item + [pad_token_id] * (batch_max_length - len(new_item))
        inputs = torch.tensor(padded[:-1])
        targets = torch.tensor(padded[1:])
        mask = targets == pad_token_id
        indices = torch.nonzero(mask).squeeze()
        if indices.numel() > 1:
            targets[indices[1:]] = ignore_index
        targets[:instruction_length - 1] = -100
        if allowed_max_length is not None:
            inputs = inputs[:allowed_max_length]
            targets = targets[:allowed_max_length]
        inputs_lst.append(inputs)
        targets_lst.append(targets)
    return torch.stack(inputs_lst).to(device), torch.stack(targets_lst).to(device)


def extract(generated_text, input_text):
    return generated_text[len(input_text):].replace("### Response:", "").strip()


def tiny_run(data, tokenizer, cfg, limit, num_epochs, max_new_tokens):
    """Sections 7.3-7.7 as the book runs them, with a seed-123 random model of `cfg`."""
    train_data, test_data, val_data = split(data[:limit])
    collate = partial(custom_collate_fn, allowed_max_length=cfg["context_length"])
    torch.manual_seed(123)
    train_loader = DataLoader(InstructionDataset(train_data, tokenizer), batch_size=8, collate_fn=collate,
                              shuffle=True, drop_last=True, num_workers=0)
    val_loader = DataLoader(InstructionDataset(val_data, tokenizer), batch_size=8, collate_fn=collate,
                            shuffle=False, drop_last=False, num_workers=0)
    torch.manual_seed(123)
    model = GPTModel(cfg)
    model.eval()
    log = {"splits": [len(train_data), len(test_data), len(val_data)], "train_batches": len(train_loader),
           "evaluations": [], "samples": []}
    torch.manual_seed(123)
    input_text = format_input(val_data[0])
    ids = generate(model, text_to_token_ids(input_text, tokenizer), 35, cfg["context_length"], eos_id=50256)
    log["response_before"] = extract(token_ids_to_text(ids, tokenizer), input_text)
    torch.manual_seed(123)
    with torch.no_grad():
        log["initial_train_loss"] = calc_loss_loader(train_loader, model, num_batches=5)
        log["initial_val_loss"] = calc_loss_loader(val_loader, model, num_batches=5)
    torch.manual_seed(123)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.00005, weight_decay=0.1)
    train_model_simple(model, train_loader, val_loader, optimizer, num_epochs, 5, 5, format_input(val_data[0]),
                       tokenizer, log)
    model.eval()
    torch.manual_seed(123)
    log["test_responses"] = []
    for entry in test_data[:3]:
        input_text = format_input(entry)
        ids = generate(model, text_to_token_ids(input_text, tokenizer), max_new_tokens, cfg["context_length"],
                       eos_id=50256)
        log["test_responses"].append(extract(token_ids_to_text(ids, tokenizer), input_text))
    return log


def main():
    tokenizer = gpt2_tokenizer()
    data = instruction_data()
    out = {"torch": torch.__version__, "records": len(data)}
    train_data, test_data, val_data = split(data)
    out["splits"] = [len(train_data), len(test_data), len(val_data)]
    out["first_validation_prompt"] = format_input(val_data[0])
    out["phi3_prompt_of_record_0"] = format_input_phi3(data[0])
    # Tokens of every training example in both styles (exercise 7.1).
    alpaca = [len(tokenizer.encode(format_input(e) + f"\n\n### Response:\n{e['output']}")) for e in train_data]
    phi3 = [len(tokenizer.encode(format_input_phi3(e) + f"\n<|assistant|>:\n{e['output']}")) for e in train_data]
    out["train_tokens"] = {"alpaca": sum(alpaca), "alpaca_longest": max(alpaca),
                           "phi3": sum(phi3), "phi3_longest": max(phi3)}
    # Section 7.3's collate example, truncated, and exercise 7.2's masking on it.
    batch = ([0, 1, 2, 3, 4], [5, 6], [7, 8, 9])
    out["collate"] = [t.tolist() for t in custom_collate_fn(batch)]
    out["collate_max_3"] = [t.tolist() for t in custom_collate_fn(batch, allowed_max_length=3)]
    out["collate_masked"] = [t.tolist() for t in masked_collate_fn(list(zip([3, 1, 2], batch)))]
    # The masked targets of the first real training example.
    entry = train_data[0]
    full = tokenizer.encode(format_input(entry) + f"\n\n### Response:\n{entry['output']}")
    prompt_len = len(tokenizer.encode(format_input(entry)))
    out["first_example_masked_targets"] = masked_collate_fn([(prompt_len, full)])[1][0].tolist()
    cfg = {"vocab_size": 50257, "context_length": 256, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
           "drop_rate": 0.0, "qkv_bias": True}
    out["tiny_config"] = cfg
    out["tiny_run"] = tiny_run(data, tokenizer, cfg, 120, 2, 20)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
