"""DPO as the companion's `ch07/04_preference-tuning-with-dpo/dpo-from-scratch.ipynb` computes
it (its `PreferenceDataset`, `custom_collate_fn`, `compute_logprobs`, `compute_dpo_loss`,
`compute_dpo_loss_batch`, followed here in our words), on a seeded tiny GPT and the first
eight records of the bundled preference data, for `ch07-instruction/tests/dpo.rs`, with a
tiny GPT and with GPT-2 small's shape (context 256):

- the collated first batch (ids and masks);
- the policy's and the reference's log-probabilities of its chosen and rejected responses,
  the loss and the mean rewards (the reference is another seeded model, so that they are not
  trivially zero);
- five AdamW steps on the policy (lr 1e-3, weight decay 0.01, dropout 0) with each step's
  loss and rewards, then the loss of the first batch.

Prints JSON.
"""

import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_init import GPTModel  # noqa: E402
from shared import data_file, gpt2_tokenizer  # noqa: E402

CONFIG = {"vocab_size": 50257, "context_length": 256, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
          "drop_rate": 0.0, "qkv_bias": False}
GPT2_SMALL = {**CONFIG, "emb_dim": 768, "n_heads": 12, "n_layers": 12}
BETA = 0.1


def format_input(entry):
    text = ("Below is an instruction that describes a task. Write a response that appropriately completes the request."
            f"\n\n### Instruction:\n{entry['instruction']}")
    return text + (f"\n\n### Input:\n{entry['input']}" if entry["input"] else "")


def encode(entry, tokenizer):
    prompt = format_input(entry)
    return {
        "prompt": tokenizer.encode(prompt),
        "chosen": tokenizer.encode(f"{prompt}\n\n### Response:\n{entry['chosen']}"),
        "rejected": tokenizer.encode(f"{prompt}\n\n### Response:\n{entry['rejected']}"),
    }


def collate(items, pad_token_id=50256, allowed_max_length=None):
    longest = max(len(item[key]) + 1 for item in items for key in ("chosen", "rejected"))
    batch = {}
    for key in ("chosen", "rejected"):
        rows, masks = [], []
        for item in items:
            sequence = item[key]
            mask = torch.ones(longest).bool()
            mask[len(sequence):] = False
            mask[:len(item["prompt"]) + 2] = False  # the prompt and the two line breaks after it
            rows.append(torch.tensor(sequence + [pad_token_id] * (longest - len(sequence))))
            masks.append(mask)
        batch[key] = torch.stack(rows)[:, :allowed_max_length]
        batch[f"{key}_mask"] = torch.stack(masks)[:, :allowed_max_length]
    return batch


def logprobs(logits, labels, mask):
    labels, logits, mask = labels[:, 1:], logits[:, :-1, :], mask[:, 1:]
    selected = torch.gather(F.log_softmax(logits, dim=-1), -1, labels.unsqueeze(-1)).squeeze(-1)
    return (selected * mask).sum(-1) / mask.sum(-1)


def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta):
    logits = (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected)
    losses = -F.logsigmoid(beta * logits)
    chosen_rewards = (policy_chosen - reference_chosen).detach()
    rejected_rewards = (policy_rejected - reference_rejected).detach()
    return losses.mean(), chosen_rewards.mean(), rejected_rewards.mean()


def batch_loss(batch, policy, reference):
    policy_chosen = logprobs(policy(batch["chosen"]), batch["chosen"], batch["chosen_mask"])
    policy_rejected = logprobs(policy(batch["rejected"]), batch["rejected"], batch["rejected_mask"])
    with torch.no_grad():
        reference_chosen = logprobs(reference(batch["chosen"]), batch["chosen"], batch["chosen_mask"])
        reference_rejected = logprobs(reference(batch["rejected"]), batch["rejected"], batch["rejected_mask"])
    loss, chosen, rejected = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, BETA)
    return loss, chosen, rejected, (policy_chosen, policy_rejected, reference_chosen, reference_rejected)


def run(config, batches, lr):
    torch.manual_seed(123)
    policy = GPTModel(config)
    torch.manual_seed(456)
    reference = GPTModel(config).eval()

    out = {"config": config, "beta": BETA, "records": 8, "batch_size": 4, "lr": lr}
    first = batches[0]
    out["first_batch"] = {key: first[key].int().tolist() for key in ("chosen", "rejected", "chosen_mask", "rejected_mask")}
    policy.eval()
    with torch.no_grad():
        loss, chosen, rejected, (pc, pr, rc, rr) = batch_loss(first, policy, reference)
    out["before"] = {"policy_chosen": pc.tolist(), "policy_rejected": pr.tolist(), "reference_chosen": rc.tolist(),
                     "reference_rejected": rr.tolist(), "loss": loss.item(), "chosen_reward": chosen.item(),
                     "rejected_reward": rejected.item()}

    policy.train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.01)
    steps = []
    for step in range(5):
        batch = batches[step % 2]
        optimizer.zero_grad()
        loss, chosen, rejected, _ = batch_loss(batch, policy, reference)
        loss.backward()
        optimizer.step()
        steps.append({"loss": loss.item(), "chosen_reward": chosen.item(), "rejected_reward": rejected.item()})
    out["steps"] = steps
    policy.eval()
    with torch.no_grad():
        out["after_loss"] = batch_loss(first, policy, reference)[0].item()
    return out


def main():
    with open(data_file("instruction-data-with-preference.json"), encoding="utf-8") as f:
        records = json.load(f)[:8]
    tokenizer = gpt2_tokenizer()
    items = [encode(entry, tokenizer) for entry in records]
    batches = [collate(items[i:i + 4], allowed_max_length=CONFIG["context_length"]) for i in (0, 4)]
    out = run(CONFIG, batches, 1e-3)
    out["gpt2_small_shape"] = run(GPT2_SMALL, batches, 1e-5)
    del out["gpt2_small_shape"]["first_batch"]
    out["torch"] = torch.__version__
    print(json.dumps(out))


if __name__ == "__main__":
    main()
