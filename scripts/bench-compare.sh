#!/usr/bin/env bash
# This project against the book's PyTorch code on this machine, in one run: a chapter 5
# training step (book and fast mode) and greedy decoding of GPT-2 small (KV cache in float32
# and int8, 8 prompts batched). The two sides run in turn, ROUNDS times, and the table
# reports medians and ratios, so a machine that gets slower or faster midway shows in both.
#
#   scripts/bench-compare.sh [--rounds 2] [--steps 5] [--max-new-tokens 200] [--only training|generation]
#                            [--device cpu|cuda|cuda:N] [--batch-size 2] [--context-length 256]
#
# It takes about 5 minutes per round on 2 cores. Nothing else should run meanwhile: two
# LibTorch processes on the same cores slow each other down. With --device cuda both sides
# run on the GPU: the training table gains PyTorch under bfloat16 autocast (fast mode's
# counterpart there), and decoding has no int8 rows (fbgemm's kernels are the CPU's).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds=2 steps=5 new_tokens=200 only="" device=cpu batch_size=2 context_length=256
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --max-new-tokens) new_tokens="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        --device) device="$2"; shift 2 ;;
        --batch-size) batch_size="$2"; shift 2 ;;
        --context-length) context_length="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$only" in ""|training|generation) ;; *) echo "--only takes training or generation" >&2; exit 2 ;; esac
for value in "$rounds" "$steps" "$new_tokens" "$batch_size" "$context_length"; do
    [[ "$value" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds, --steps, --max-new-tokens, --batch-size and --context-length take positive integers" >&2; exit 2; }
done
[[ "$device" =~ ^(cpu|cuda(:[0-9]+)?)$ ]] || { echo "--device takes cpu, cuda or cuda:N" >&2; exit 2; }
gpu=false; [ "$device" = cpu ] || gpu=true

# OURS (a prebuilt binary, as on a GPU machine without Rust) and PYTHON may be given.
if [ -z "${OURS:-}" ]; then
    "$root/scripts/setup.sh" > /dev/null
    (cd "$root" && cargo build --release --quiet -p ch05-pretraining)
fi
ours="${OURS:-$root/target/release/ch05-pretraining}"
if [ -z "${PYTHON:-}" ]; then
    torch_dir="$(readlink -f "$root/.libtorch")"
    PYTHON="$torch_dir/../../../../bin/python"
fi
python="$PYTHON"
[ -x "$python" ] || command -v "$python" > /dev/null || { echo "no Python with torch: set PYTHON" >&2; exit 1; }
"$python" -c "import tiktoken" 2>/dev/null || "$python" -m pip install --quiet tiktoken
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

for round in $(seq "$rounds"); do
    if [ "$only" != generation ]; then
        echo "round $round/$rounds: training steps" >&2
        shape=(--steps "$steps" --batch-size "$batch_size" --context-length "$context_length")
        "$python" -W ignore "$root/scripts/reference/bench_pytorch.py" step "${shape[@]}" --device "$device" \
            > "$out/step-pytorch-$round.json"
        if $gpu; then
            "$python" -W ignore "$root/scripts/reference/bench_pytorch.py" step "${shape[@]}" --device "$device" \
                --autocast bf16 > "$out/step-pytorch-bf16-$round.json"
        fi
        "$ours" bench-step "${shape[@]}" --mode book --device "$device" --json > "$out/step-book-$round.json"
        "$ours" bench-step "${shape[@]}" --mode fast --device "$device" --json > "$out/step-fast-$round.json"
    fi
    if [ "$only" != training ]; then
        echo "round $round/$rounds: generation" >&2
        "$python" -W ignore "$root/scripts/reference/bench_pytorch.py" generate --max-new-tokens "$new_tokens" \
            --device "$device" > "$out/generate-pytorch-$round.json"
        "$python" -W ignore "$root/scripts/reference/bench_pytorch.py" generate --max-new-tokens "$new_tokens" \
            --device "$device" --preallocated > "$out/generate-pytorch-preallocated-$round.json"
        int8=(--int8); $gpu && int8=()
        "$ours" bench-generate --max-new-tokens "$new_tokens" --device "$device" "${int8[@]}" --json \
            > "$out/generate-ours-$round.json"
    fi
done

"$python" - "$out" "$rounds" "$only" <<'EOF'
import json, platform, statistics, sys
from pathlib import Path

out, rounds, only = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
load = lambda name: [json.loads((out / f"{name}-{r}.json").read_text()) for r in range(1, rounds + 1)]
median = lambda runs, key: statistics.median(run[key] for run in runs)
first = json.loads(next(out.glob("*pytorch*.json")).read_text())
if first["device"] == "cpu":
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    where = f"{cpu}, torch {first['torch']} on {first['threads']} threads"
else:
    where = f"{first['device']}, torch {first['torch']} (PyTorch's side)"
print(f"{where}; medians of {rounds} alternating rounds\n")


def training():
    pytorch, book, fast = load("step-pytorch"), load("step-book"), load("step-fast")
    sides = [("the book's PyTorch code", pytorch)]
    if (out / "step-pytorch-bf16-1.json").exists():
        sides.append(("the book's PyTorch code, bfloat16 autocast", load("step-pytorch-bf16")))
    sides += [("this project, book mode", book), ("this project, fast mode", fast)]
    shape = f"batch {book[0]['batch_size']} x {book[0]['context_length']}"
    print(f"| training step (GPT-2 small, {shape}) | forward + loss | backward | optimizer | step | tokens/s | MFU | vs PyTorch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base = median(pytorch, "step_s")
    for name, runs in sides:
        flops = book[0]["model_gflops_per_step"]
        mfu = statistics.median(flops / r["step_s"] / r["matmul_gflops"] for r in runs)
        print(f"| {name} | {median(runs, 'forward_s'):.2f} s | {median(runs, 'backward_s'):.2f} s | "
              f"{median(runs, 'optimizer_s'):.2f} s | {median(runs, 'step_s'):.2f} s | {median(runs, 'tokens_per_s'):.0f} | "
              f"{100 * mfu:.0f} % | {base / median(runs, 'step_s'):.2f}x |")
    same = all(abs(a - b) < 1e-3 for p, o in zip(pytorch, book) for a, b in zip(p["losses"], o["losses"]))
    print(f"\nBook mode's losses equal PyTorch's (to 1e-3 at every step): {same}")
    print("Fast mode's losses: " + ", ".join(f"{l:.4f}" for l in fast[0]["losses"])
          + " (book: " + ", ".join(f"{l:.4f}" for l in book[0]["losses"]) + ")\n")


def generation():
    gen_pt, gen_opt, gen = load("generate-pytorch"), load("generate-pytorch-preallocated"), load("generate-ours")
    rows = {row["name"]: row for row in gen[0]["rows"]}
    rate = lambda name: statistics.median({r["name"]: r for r in run["rows"]}[name]["tokens_per_s"] for run in gen)
    pt = median(gen_pt, "tokens_per_s")
    print(f"| greedy decoding, GPT-2 small, {gen_pt[0]['new_tokens']} tokens | tokens/s | vs PyTorch |")
    print("|---|---:|---:|")
    print(f"| the book's KV-cache code (PyTorch) | {pt:.1f} | 1.00x |")
    opt = median(gen_opt, "tokens_per_s")
    print(f"| the book's optimized KV-cache code (PyTorch, preallocated cache) | {opt:.1f} | {opt / pt:.2f}x |")
    for name in rows:
        print(f"| this project: {name} | {rate(name):.1f} | {rate(name) / pt:.2f}x |")
    print(f"\nBatched rows decode each prompt's tokens alone: {all(run['batched_tokens_identical'] for run in gen)}")


if only != "generation":
    training()
if only != "training":
    generation()
EOF
