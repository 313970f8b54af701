#!/usr/bin/env bash
# Greedy decoding of a model with Llama 3.2 1B's exact shapes (random weights, made once by
# transformers into a cache folder; nothing is downloaded or committed), this project against
# transformers on this machine, in one run: KV-cached float32 on both sides, and our int8
# (fbgemm) weights. Each side runs ROUNDS times in turn; the table reports medians, ratios
# and each process's peak resident memory.
#
#   scripts/bench-families.sh [--rounds 2] [--max-new-tokens 32]
#
# It needs about 12 GB of memory and 3 GB of disk, and takes about 4 minutes per round on
# 2 cores. Nothing else should run meanwhile.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds=2 new_tokens=32
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --max-new-tokens) new_tokens="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for value in "$rounds" "$new_tokens"; do
    [[ "$value" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds and --max-new-tokens take positive integers" >&2; exit 2; }
done

"$root/scripts/setup.sh" > /dev/null
torch_dir="$(readlink -f "$root/.libtorch")"
python="${PYTHON:-$torch_dir/../../../../bin/python}"
[ -x "$python" ] || { echo "no Python with torch next to $torch_dir; set PYTHON" >&2; exit 1; }
"$python" -c "import transformers" 2>/dev/null || "$python" -m pip install --quiet transformers
(cd "$root" && cargo build --release --quiet -p ch05-pretraining)
ours="$root/target/release/ch05-pretraining"
bench="$root/scripts/reference/bench_family.py"
model="${LLMS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llms-from-scratch-rs}/bench/llama-3.2-1b-shaped"
if [ ! -f "$model/config.json" ]; then
    echo "making the random Llama 3.2 1B-shaped model in $model" >&2
    "$python" -W ignore "$bench" make "$model" > /dev/null
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

for round in $(seq "$rounds"); do
    echo "round $round/$rounds: transformers" >&2
    "$python" -W ignore "$bench" generate "$model" --max-new-tokens "$new_tokens" > "$out/transformers-$round.json"
    echo "round $round/$rounds: ours, float32" >&2
    "$python" "$bench" run -- "$ours" --device cpu bench-generate --weights "$model" --batch 1 \
        --max-new-tokens "$new_tokens" --json > "$out/float32-$round.json"
    echo "round $round/$rounds: ours, float32 then int8" >&2
    "$python" "$bench" run -- "$ours" --device cpu bench-generate --weights "$model" --batch 1 \
        --max-new-tokens "$new_tokens" --int8 --json > "$out/int8-$round.json"
done

"$python" - "$out" "$rounds" <<'EOF'
import json, statistics, sys
from pathlib import Path

out, rounds = Path(sys.argv[1]), int(sys.argv[2])
load = lambda name: [json.loads((out / f"{name}-{r}.json").read_text()) for r in range(1, rounds + 1)]
hf, f32, i8 = load("transformers"), load("float32"), load("int8")
row = lambda runs, name: statistics.median(next(r for r in run["rows"] if r["name"] == name)["tokens_per_s"] for run in runs)
hf_tps = statistics.median(r["tokens_per_s"] for r in hf)
ours_f32 = row(f32, "KV cache, float32")
ours_i8 = row(i8, "KV cache, int8 (fbgemm)")
peak = lambda runs: statistics.median(r["peak_mb"] for r in runs) / 1024
print(f"Greedy decoding, Llama 3.2 1B shapes (random weights), {f32[0]['threads']} threads, "
      f"{hf[0]['new_tokens']} new tokens, median of {rounds} rounds; {hf[0]['library']}")
print()
print("| decoding | tokens/s | vs transformers | vs our float32 | peak memory |")
print("|---|---:|---:|---:|---:|")
print(f"| transformers, KV cache, float32 (eager) | {hf_tps:.2f} | 1.00x | | {peak(hf):.1f} GB |")
print(f"| ours, KV cache, float32 | {ours_f32:.2f} | {ours_f32 / hf_tps:.2f}x | 1.00x | {peak(f32):.1f} GB |")
print(f"| ours, KV cache, int8 (fbgemm) | {ours_i8:.2f} | {ours_i8 / hf_tps:.2f}x | {ours_i8 / ours_f32:.2f}x | "
      f"{peak(i8):.1f} GB (float32 weights kept) |")
EOF
