"""Loads one of our checkpoints (NAME.safetensors + NAME.json) into the book's PyTorch
GPTModel with load_state_dict(strict=True) and prints the logits for the given token ids as
JSON. Reads safetensors with torch alone (no extra package). Used by shared/tests/weights.rs.

    load_checkpoint.py NAME.safetensors NAME.json "[ids]"
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


def main():
    weights, meta, ids = sys.argv[1], json.loads(Path(sys.argv[2]).read_text()), json.loads(sys.argv[3])
    model = GPTModel(meta["config"]).eval()
    model.load_state_dict(read_safetensors(weights), strict=True)
    with torch.no_grad():
        print(json.dumps(model(torch.tensor([ids])).flatten().tolist()))


if __name__ == "__main__":
    main()
