#!/usr/bin/env bash
# The chapter 7 server against clients no one here wrote:
#   - OpenAI's official Python client (chat, streamed chat, completions, an error), and
#   - the chat page in headless Chromium, driven by Selenium (a screenshot is kept).
# Both check that the reply equals `respond`'s for the same model and settings (greedy). The
# server serves two models: the small model and LoRA adapters over it, trained here for a few
# steps (their reply is checked against `respond` with the run's merged checkpoint).
#
# Needs: `./scripts/setup.sh` done (its virtual environment gets `openai` and `selenium`),
# and Debian's `chromium` and `chromium-driver` (`apt-get install chromium chromium-driver`).
# The model is a small random one (configs/small.json), so no weights are needed.
# Artefacts (server log, screenshot) go to target/client-tests/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$root/target/client-tests"
mkdir -p "$out"

die() { printf 'test-serve-clients: error: %s\n' "$*" >&2; exit 1; }
for tool in /usr/bin/chromium /usr/bin/chromedriver; do
    [ -x "$tool" ] || die "$tool is missing: apt-get install chromium chromium-driver"
done

# The setup's virtual environment (or, with a LIBTORCH of the user's, one beside its cache).
./scripts/setup.sh
cache="${LLMS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llms-from-scratch-rs}"
python="$(readlink -f .libtorch)/../../../../bin/python"
if [ ! -x "$python" ]; then
    [ -x "$cache/clients-venv/bin/python" ] || python3 -m venv "$cache/clients-venv"
    python="$cache/clients-venv/bin/python"
fi
"$python" -c "import openai, selenium" 2>/dev/null \
    || "$python" -m pip install --disable-pip-version-check --quiet "openai>=1.40,<4" "selenium>=4.20,<5" \
    || die "pip could not install openai and selenium"

cargo build --quiet -p ch07-instruction
bin="$root/target/debug/ch07-instruction"
model=(--init random --config configs/small.json)

"$bin" respond "${model[@]}" --instruction "Name a planet." --max-new-tokens 20 > "$out/expected.txt"
# A LoRA run over the same model: its adapters alone, and its merged checkpoint.
"$bin" "${model[@]}" --lora --lora-rank 8 --limit 24 --epochs 1 --lr 0.004 --no-responses \
    --out-dir "$out/lora" > "$out/lora.log" 2>&1 || { cat "$out/lora.log" >&2; die "the LoRA run failed"; }
"$bin" respond --checkpoint "$out/lora/sft.safetensors" --instruction "Name a planet." --max-new-tokens 20 \
    > "$out/expected-tuned.txt"

"$bin" serve --port 0 --model small=random:configs/small.json \
    --model tuned=small+"$out/lora/lora-adapters.safetensors" > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
url=""
for _ in $(seq 1 600); do
    url="$(grep -o 'http://127.0.0.1:[0-9]*' "$out/server.log" | head -n 1 || true)"
    [ -n "$url" ] && break
    kill -0 $server 2>/dev/null || { cat "$out/server.log" >&2; die "the server did not start"; }
    sleep 0.2
done
[ -n "$url" ] || die "the server did not say where it listens (see $out/server.log)"

"$python" ch07-instruction/tests/clients/openai_client.py "$url" small "$out/expected.txt" \
    tuned "$out/expected-tuned.txt"
SE_OFFLINE=true "$python" ch07-instruction/tests/clients/chat_page.py "$url" "$out/expected.txt" "$out/chat-page.png" \
    tuned "$out/expected-tuned.txt"
kill -INT $server
wait $server || die "the server did not stop cleanly on Ctrl-C (see $out/server.log)"
trap - EXIT
echo "test-serve-clients: all passed"
