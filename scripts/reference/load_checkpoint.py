"""Our checkpoints in the book's PyTorch GPTModel.

    load_checkpoint.py NAME.safetensors NAME.json "[ids]"
        loads one of our checkpoints (NAME.safetensors + NAME.json) into the book's GPTModel
        with load_state_dict(strict=True) and prints the logits for the token ids as JSON
        (reads safetensors with torch alone, no extra package);
    load_checkpoint.py --reference
        what shared/tests/weights.rs pins (shared/tests/fixtures/book-state-dict.json): the
        names and shapes of the book's state_dict, which a strict load_state_dict requires of
        our files, and the logits of the seed-123 model for a few ids.
"""
import json
import struct
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpt_init import GPTModel  # noqa: E402

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}


def read_safetensors(path):
    data = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    header.pop("__metadata__", None)
    body = bytearray(data[8 + length:])
    tensors = {}
    for name, info in header.items():
        dtype = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        count = (end - begin) // torch.empty((), dtype=dtype).element_size()
        tensors[name] = torch.frombuffer(body, dtype=dtype, offset=begin, count=count).view(info["shape"]).clone()
    return tensors


REFERENCE_CONFIG = {"vocab_size": 1000, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
                    "drop_rate": 0.1, "qkv_bias": False}
REFERENCE_IDS = [3, 1, 4, 1, 5, 9, 2, 6]


def reference():
    torch.manual_seed(123)
    model = GPTModel(REFERENCE_CONFIG).eval()
    with torch.no_grad():
        logits = model(torch.tensor([REFERENCE_IDS])).flatten().tolist()
    state = {name: list(t.shape) for name, t in model.state_dict().items()}
    print(json.dumps({"torch": torch.__version__, "config": REFERENCE_CONFIG, "ids": REFERENCE_IDS,
                      "state_dict": state, "logits": logits}))


def main():
    if sys.argv[1:] == ["--reference"]:
        return reference()
    weights, meta, ids = sys.argv[1], json.loads(Path(sys.argv[2]).read_text()), json.loads(sys.argv[3])
    model = GPTModel(meta["config"]).eval()
    model.load_state_dict(read_safetensors(weights), strict=True)
    with torch.no_grad():
        print(json.dumps(model(torch.tensor([ids])).flatten().tolist()))


if __name__ == "__main__":
    main()
