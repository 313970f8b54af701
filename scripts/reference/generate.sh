#!/usr/bin/env bash
# Regenerates the PyTorch reference fixtures the tests compare against, with the setup's
# Python (torch==2.13.0, CPU). Each script runs the book's PyTorch code and prints JSON.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/scripts/setup.sh"
torch_dir="$(readlink -f "$root/.libtorch")"
python="${PYTHON:-$torch_dir/../../../../bin/python}"
[ -x "$python" ] || { echo "no Python with torch next to $torch_dir; set PYTHON" >&2; exit 1; }
# The chapter 5-7 scripts tokenize with tiktoken, build Hugging Face checkpoints with
# transformers and prepare the spam data with pandas; they go into the setup's environment
# on first use.
"$python" -c "import tiktoken, transformers, tokenizers, pandas, jinja2" 2>/dev/null ||
    "$python" -m pip install --quiet tiktoken transformers tokenizers pandas jinja2

generate() { # script, output
    mkdir -p "$(dirname "$root/$2")"
    "$python" -W ignore "$root/scripts/reference/$1" > "$root/$2.tmp" && mv "$root/$2.tmp" "$root/$2"
    echo "wrote $2"
}
generate shared.py shared/tests/fixtures/pytorch-reference.json
generate ch03_attention.py ch03-attention/tests/fixtures/pytorch-reference.json
generate appendix_a.py appendix-a/tests/fixtures/pytorch-reference.json
generate gpt_init.py shared/tests/fixtures/gpt124m-init-seed123.json
generate ch04_gpt.py ch04-gpt/tests/fixtures/pytorch-reference.json
generate ch05_pretraining.py ch05-pretraining/tests/fixtures/pytorch-reference.json
generate appendix_d.py ch05-pretraining/tests/fixtures/appendix-d-reference.json
generate ch06_classification.py shared/tests/fixtures/spam-reference.json
generate ch07_instruction.py ch07-instruction/tests/fixtures/pytorch-reference.json
"$python" -W ignore "$root/scripts/reference/load_checkpoint.py" --reference > "$root/shared/tests/fixtures/book-state-dict.json"
echo "wrote shared/tests/fixtures/book-state-dict.json"
"$python" -W ignore "$root/scripts/reference/gpt2_fixtures.py" "$root/shared/tests/fixtures" 2>/dev/null
echo "wrote shared/tests/fixtures/{gpt2-tiny-hf,gpt2-tiny-openai,book-tiny.pth,book-tiny.json}"
"$python" -W ignore "$root/scripts/reference/logits_processors.py" "$root/shared/tests/fixtures" \
    > "$root/shared/tests/fixtures/logits-processors.json" 2>/dev/null
echo "wrote shared/tests/fixtures/logits-processors.json"
rm -rf "$root/shared/tests/fixtures/hf"
"$python" -W ignore "$root/scripts/reference/hf_families.py" "$root/shared/tests/fixtures/hf" 2>/dev/null
"$python" -W ignore "$root/scripts/reference/chat_template_features.py" \
    "$root/shared/tests/fixtures/hf/template-features.json" 2>/dev/null
echo "wrote shared/tests/fixtures/hf/{llama,qwen3,gemma3,template-features.json}"

# Cross-check against the independent reference values (committed copies).
parity="$root/ch03-attention/tests/fixtures/independent/ch03-attention.json"
if [ -f "$parity" ]; then
    "$python" - "$parity" "$root/ch03-attention/tests/fixtures/pytorch-reference.json" <<'PY'
import json, sys
independent, ours = (json.load(open(path)) for path in sys.argv[1:3])
pairs = {"inputs": "inputs", "seed123_SelfAttentionV1_out": "sa_v1",
         "seed789_SelfAttentionV2_out": "sa_v2", "seed123_MultiHeadAttention_d_out2_heads2_out": "mha"}
def flat(x): return [v for item in x for v in flat(item)] if isinstance(x, list) else [x]
for theirs, mine in pairs.items():
    worst = max(abs(a - b) for a, b in zip(flat(independent[theirs]), flat(ours[mine])))
    assert worst <= 5e-5, f"{mine} differs from {theirs} by {worst}"
print("ch03 reference agrees with the independent reference (tests/fixtures/independent) to 4 decimals")
PY
fi
parity="$root/shared/tests/fixtures/independent/gpt124m-init-seed123.json"
if [ -f "$parity" ]; then
    "$python" - "$parity" "$root/shared/tests/fixtures/gpt124m-init-seed123.json" <<'PY'
import json, sys
independent, ours = (json.load(open(path)) for path in sys.argv[1:3])
for key, theirs in independent.items():
    mine = ours[key]
    assert mine["shape"] == theirs["shape"], key
    assert all(abs(a - b) <= 5e-9 for a, b in zip(mine["first5"], theirs["first5"])), key
    assert abs(mine["sum"] - theirs["sum"]) <= 1e-6 * max(1.0, abs(theirs["sum"])), key
print("GPT-124M init reference agrees with the independent reference (tests/fixtures/independent)")
PY
fi
