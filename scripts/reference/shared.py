"""PyTorch reference values pinned by the `shared` and `ch02-tokenization` tests.

Run through scripts/reference/generate.sh, which writes the JSON this prints to
shared/tests/fixtures/pytorch-reference.json.
"""
import json

import torch


def randperm(n, seed):
    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.randperm(n, generator=generator).tolist()


def main():
    values = {"torch": torch.__version__}
    # shared/src/core/torch_rng.rs: randperm on a fresh generator, global int64 draws.
    values["randperm_10_seed_123"] = randperm(10, 123)
    values["randperm_20_seed_2^40+5"] = randperm(20, 2**40 + 5)
    torch.manual_seed(123)
    draws = [torch.empty((), dtype=torch.int64).random_().item() for _ in range(2)]
    values["global_int64_draws_after_seed_123"] = draws
    # shared/src/data/dataset.rs: DataLoader(shuffle=True) over 9 samples, batch 3, seed 123.
    torch.manual_seed(123)
    loader = torch.utils.data.DataLoader(list(range(9)), batch_size=3, shuffle=True, drop_last=True)
    values["dataloader_epoch_seed_123"] = [int(x) for batch in loader for x in batch]
    values["randperm_9_seed_second_draw"] = randperm(9, draws[1])
    # ch02-tokenization walk-through: torch.manual_seed(123); nn.Embedding(6, 3).
    torch.manual_seed(123)
    values["embedding_6x3_seed_123"] = torch.nn.Embedding(6, 3).weight.detach().tolist()
    print(json.dumps(values, indent=1))


if __name__ == "__main__":
    main()


def data_file(name):
    """A data set as the Rust code resolves it: $LLMS_DATA_DIR, then the bundled copies in
    datasets/, then the download cache data/."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for folder in [os.environ.get("LLMS_DATA_DIR"), root / "datasets", root / "data"]:
        if folder and (Path(folder) / name).exists():
            return Path(folder) / name
    raise SystemExit(f"{name} not found in $LLMS_DATA_DIR, datasets/ or data/")


def gpt2_tokenizer():
    """tiktoken's "gpt2" encoding built from the rank file that tiktoken-rs bundles (the same
    ranks as OpenAI's vocab.bpe), so no download is needed; $LLMS_GPT2_RANKS names a copy."""
    import glob
    import os

    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext.openai_public import r50k_pat_str

    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    files = sorted(glob.glob(f"{home}/registry/src/*/tiktoken-rs-*/assets/r50k_base.tiktoken"))
    if os.environ.get("LLMS_GPT2_RANKS"):  # a copy of that file, where there is no cargo registry
        files = [os.environ["LLMS_GPT2_RANKS"]]
    if not files:
        raise SystemExit("r50k_base.tiktoken not found in the cargo registry: run `cargo fetch` first, "
                         "or set LLMS_GPT2_RANKS to a copy of it")
    return tiktoken.Encoding(name="gpt2", pat_str=r50k_pat_str, mergeable_ranks=load_tiktoken_bpe(files[-1]),
                             special_tokens={"<|endoftext|>": 50256})
