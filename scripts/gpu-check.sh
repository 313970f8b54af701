#!/usr/bin/env bash
# Checks this project on a CUDA GPU in one command: every step runs on the GPU with its own
# time limit, and one report (gpu-report.md in the output folder, every step's log beside
# it) shows each step's result, time and device. The steps:
#    1. nvidia-smi, and PyTorch's view of the GPU
#    2. chapter 5's main job on the GPU, and the book's PyTorch code on the same GPU: the
#       largest loss difference (check-run --tolerance 1e-3), both wall times
#    3. training steps in book and fast mode against PyTorch in float32 and under bfloat16
#       autocast, batch 2 x 256 and 8 x 1024; decoding against the book's KV-cache code
#       (scripts/bench-compare.sh --device cuda)
#    4. the matrix products of the criterion bench's GPU group (float32 and bfloat16)
#    5. ch03-attention bench --device cuda
#    6. the chapter 4 and appendix A walk-throughs on the GPU (A.9.2 trains there)
#    7. the chapter 21 walk-through (a small model trained from scratch)
#    8. ch07-instruction load-test: concurrent requests against `serve` on the GPU
#    9. data parallelism over NCCL: appendix-a ddp and ch05-pretraining train --ddp
#       (one process each, --nproc-per-node 1)
# A step fails when its command fails, runs out of time, or never names the device in its
# output (a silent fallback to the CPU).
#
# From a checkout, after ./scripts/setup.sh (which installs a CUDA-enabled PyTorch):
#   scripts/gpu-check.sh [--quick] [--out DIR]
# On a GPU machine without Rust, with binaries built here by
# ../shared/tools/build-for-libtorch.sh VERSION OUT_DIR ch03-attention ch04-gpt
# ch05-pretraining ch07-instruction ch21-advanced appendix-a and unpacked there:
#   BIN_DIR=/tmp/b PYTHON=python3 LLMS_GPT2_RANKS=/path/r50k_base.tiktoken scripts/gpu-check.sh
# (LD_LIBRARY_PATH pointing at that PyTorch's lib/, as the build script's header says.)
# --quick shortens the long steps (fewer epochs and rounds) to fit a few minutes; --only
# STEP,STEP runs those steps alone (names as in the report); --device cpu runs the same
# steps on the CPU, to try the script on a machine without a GPU (slow: use --only).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$root/target/gpu-check"
quick=false only="" device=cuda
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=true; shift ;;
        --out) out="$2"; shift 2 ;;
        --only) only=",$2,"; shift 2 ;;
        --device) device="$2"; shift 2 ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$device" in
    cuda) named='cuda(:[0-9]+)?|NVIDIA [A-Za-z0-9 -]+|matmul_gpu/' group=matmul_gpu backend=nccl ;;
    cpu) named='\bcpu\b|matmul_cpu/' group=matmul_cpu backend=gloo ;;
    *) echo "--device takes cuda or cpu" >&2; exit 2 ;;
esac
mkdir -p "$out"
report="$out/gpu-report.md"
die() { printf 'gpu-check: error: %s\n' "$*" >&2; exit 1; }

# The binaries: prebuilt in BIN_DIR, or built here.
crates=(ch03-attention ch04-gpt ch05-pretraining ch07-instruction ch21-advanced appendix-a)
if [ -n "${BIN_DIR:-}" ]; then
    bin="$BIN_DIR"
    matmul=("$bin/matmul" --bench "$group")
else
    ./scripts/setup.sh > /dev/null || die "setup failed"
    cargo build --release --quiet $(printf -- '-p %s ' "${crates[@]}") || die "the build failed"
    bin="$root/target/release"
    matmul=(cargo bench --quiet -p ch03-attention --bench matmul -- "$group")
    PYTHON="${PYTHON:-$(readlink -f .libtorch)/../../../../bin/python}"
fi
python="${PYTHON:-python3}"
for crate in "${crates[@]}"; do [ -x "$bin/$crate" ] || die "$bin/$crate is missing"; done
export LLMS_DATA_DIR="${LLMS_DATA_DIR:-$root/datasets}"

epochs=10 rounds=2 load_requests=64
$quick && epochs=2 rounds=1 load_requests=24

passed=0 failed=0
printf '# GPU check\n\n%s\n\n| step | result | seconds | device named |\n|---|---|---:|---|\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" > "$report.table"
: > "$report.body"

# step NAME SECONDS COMMAND...: runs COMMAND with a time limit, its output in NAME.log.
step() {
    local name="$1" limit="$2"; shift 2
    [ -z "$only" ] || [[ "$only" == *",$name,"* ]] || return 0
    local log="$out/$name.log" start rc result seen
    printf '== %s (limit %s s)\n' "$name" "$limit" >&2
    start=$(date +%s.%N)
    timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
    rc=$?
    local seconds
    seconds=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
    seen=$(grep -o -m1 -E "$named" "$log" | head -n 1)
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        result="FAILED: out of time"
    elif [ $rc -ne 0 ]; then
        result="FAILED (exit $rc)"
    elif [ -z "$seen" ]; then
        result="FAILED: the output never names $device (a silent fallback?)"
    else
        result="passed"
    fi
    if [ "$result" = passed ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
    printf '| %s | %s | %s | %s |\n' "$name" "$result" "$seconds" "${seen:--}" >> "$report.table"
    { printf '\n## %s: %s (%s s)\n\n```\n$ %s\n' "$name" "$result" "$seconds" "$*"; tail -n 60 "$log"; printf '```\n'; } >> "$report.body"
    printf '   %s in %s s\n' "$result" "$seconds" >&2
}

[ "$device" = cpu ] || step nvidia-smi 60 bash -c 'nvidia-smi && '"$python"' -c "import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name(0))"'

# Chapter 5's main job, ours and PyTorch's on the same GPU, then the comparison.
ch05_out="$out/ch05"
step ch05-main-ours 1200 "$bin/ch05-pretraining" train --device "$device" --epochs "$epochs" --out-dir "$ch05_out"
reference="$out/pytorch-run.json"
step ch05-main-pytorch 1200 bash -c "$python -W ignore scripts/reference/ch05_pretraining.py --full --device $device --epochs $epochs > $reference && grep -o '\"device\": \"[^\"]*\"' $reference"
step ch05-check-run 60 bash -c "$bin/ch05-pretraining check-run $ch05_out/metrics.json --reference $reference --tolerance 1e-3 && grep -o '\"device\": \"[^\"]*\"' $ch05_out/metrics.json"

# Training steps and decoding against the book's PyTorch code, both on the GPU.
bench=(env OURS="$bin/ch05-pretraining" PYTHON="$python" scripts/bench-compare.sh --device "$device" --rounds "$rounds")
step bench-2x256 900 "${bench[@]}"
step bench-8x1024 900 "${bench[@]}" --only training --batch-size 8 --context-length 1024
step matmul 600 "${matmul[@]}"

# The matmul bench's largest products against the GPU's datasheet peak (dense, no sparsity).
matmul_table() {
    [ -f "$out/matmul.log" ] || return 0
    local gpu
    gpu="$("$python" -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null || echo unknown)"
    python3 - "$out/matmul.log" "$gpu" "$group" <<'PY'
import re, sys
log, gpu, group = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
# TFLOP/s from NVIDIA's datasheets: float32, TF32 and bfloat16 tensor cores, without sparsity.
peaks = [("H100 PCIe", (51, 378, 756)), ("H100", (67, 494.7, 989.4)), ("H200", (67, 494.7, 989.4)),
         ("A100", (19.5, 156, 312)), ("L4", (30.3, 60, 121))]
peak = next((p for name, p in peaks if name in gpu), None)
scale = {"": 1e-12, "K": 1e-9, "M": 1e-6, "G": 1e-3, "T": 1.0}
print(f"\n| {group}, {gpu}: 4096 x 4096 @ 4096 x 4096 | TFLOP/s | datasheet peak | share |\n|---|---:|---:|---:|")
for i, label in enumerate(["Float", "TF32", "BFloat16"]):
    found = re.search(rf"{group}/{label}/4096x4096@4096x4096.*?thrpt:\s*\[\S+ \S+ (\S+) (\w?)elem/s", log, re.S)
    if not found:
        continue
    tflops = float(found.group(1)) * scale[found.group(2)]
    top = f"{peak[i]:g}" if peak else "?"
    share = f"{100 * tflops / peak[i]:.0f} %" if peak else "?"
    print(f"| {label} | {tflops:.1f} | {top} | {share} |")
PY
}
step ch03-attention-bench 600 "$bin/ch03-attention" bench --device "$device"
step ch04-walkthrough 300 "$bin/ch04-gpt" --device "$device" --out-dir "$out/ch04"
step appendix-a-walkthrough 300 "$bin/appendix-a" --device "$device" --out-dir "$out/appendix-a"
step ch21-walkthrough 1200 "$bin/ch21-advanced" --device "$device" --out-dir "$out/ch21"
step ch07-load-test 600 "$bin/ch07-instruction" load-test --device "$device" --init random --config gpt2-small \
    --requests "$load_requests" --concurrency 8 --max-tokens 64
step appendix-a-ddp-nccl 300 "$bin/appendix-a" ddp --device "$device" --backend "$backend" --nproc-per-node 1 --out-dir "$out/ddp"
step ch05-ddp-nccl 900 "$bin/ch05-pretraining" train --device "$device" --ddp --nproc-per-node 1 --backend "$backend" \
    --epochs 1 --out-dir "$out/ch05-ddp"

{ cat "$report.table"; printf '\n%s passed, %s failed\n' "$passed" "$failed"; matmul_table; cat "$report.body"; } > "$report"
rm -f "$report.table" "$report.body"
echo "gpu-check: $passed passed, $failed failed; the report is $report" >&2
[ "$failed" -eq 0 ]
