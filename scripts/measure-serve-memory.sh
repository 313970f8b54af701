#!/usr/bin/env bash
# The memory of serving LoRA adapters over one base model, against serving each fine-tuned
# model whole: `ch07-instruction serve` at GPT-2 small's shape (124M parameters, a seeded
# random model: no weights are needed) in three ways, each in its own process:
#   1. the base model alone;
#   2. the base and two LoRA adapters over it (--model NAME=BASE+ADAPTERS), sharing its weights;
#   3. the base and the two LoRA runs' merged checkpoints, three models of their own.
# Each server answers one request per model, then reports its resident memory and its
# weights' bytes (GET /health). Prompt caching is off (--prompt-cache 0): each kept cache
# would add the model's whole context of keys and values (75 MB at GPT-2 small's shape). The two LoRA runs (a few steps each, ranks 16 and 8) are made
# first, once, in target/serve-memory/.
#
# Usage: scripts/measure-serve-memory.sh [CONFIG]   (default gpt2-small)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
config="${1:-gpt2-small}"
out="$root/target/serve-memory/$config"
mkdir -p "$out"
die() { printf 'measure-serve-memory: error: %s\n' "$*" >&2; exit 1; }

./scripts/setup.sh
cargo build --release --quiet -p ch07-instruction
bin="$root/target/release/ch07-instruction"

for rank in 16 8; do
    if [ ! -f "$out/lora-$rank/lora-adapters.safetensors" ]; then
        echo "LoRA run, rank $rank, over a random $config ..." >&2
        "$bin" --init random --config "$config" --lora --lora-rank "$rank" --limit 24 --epochs 1 --no-responses \
            --out-dir "$out/lora-$rank" > "$out/lora-$rank.log" 2>&1 || { cat "$out/lora-$rank.log" >&2; die "the LoRA run failed"; }
    fi
done

# Serves with the given --model flags, asks each model once, prints a table row.
measure() {
    local label="$1"; shift
    local log="$out/server.log"
    "$bin" serve --port 0 --prompt-cache 0 "$@" > "$log" 2>&1 &
    local server=$!
    local url=""
    for _ in $(seq 1 1200); do
        url="$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -n 1 || true)"
        [ -n "$url" ] && break
        kill -0 $server 2>/dev/null || { cat "$log" >&2; die "the server did not start"; }
        sleep 0.2
    done
    [ -n "$url" ] || { kill $server; die "the server did not start in time (see $log)"; }
    local models
    models="$(curl -sf "$url/v1/models" | python3 -c 'import json,sys; print(" ".join(m["id"] for m in json.load(sys.stdin)["data"]))')"
    for model in $models; do
        curl -sf "$url/v1/chat/completions" -H 'Content-Type: application/json' \
            -d "{\"model\": \"$model\", \"messages\": [{\"role\": \"user\", \"content\": \"Name a planet.\"}], \"max_tokens\": 8}" > /dev/null \
            || die "$model did not answer"
    done
    curl -sf "$url/health" | python3 -c '
import json, sys
label, health = sys.argv[1], json.load(sys.stdin)
memory, mib = health["memory"], 1 << 20
print(f"| {label} | {len(health['"'"'models'"'"'])} | {memory['"'"'weight_bytes'"'"'] / mib:,.1f} | {memory['"'"'resident_bytes'"'"'] / mib:,.0f} |")
' "$label"
    kill -INT $server
    wait $server || die "the server did not stop cleanly (see $log)"
}

base="base=random:$config"
echo "| served ($config shape) | models | weights (MiB) | resident (MiB) |"
echo "|---|---:|---:|---:|"
measure "one model" --model "$base"
measure "base + 2 LoRA adapters (shared weights)" --model "$base" \
    --model "rank16=base+$out/lora-16/lora-adapters.safetensors" --model "rank8=base+$out/lora-8/lora-adapters.safetensors"
measure "base + 2 merged fine-tuned models" --model "$base" \
    --model "rank16=$out/lora-16/sft.safetensors" --model "rank8=$out/lora-8/sft.safetensors"
