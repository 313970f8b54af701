#!/usr/bin/env bash
# Makes LibTorch available to `tch` and links it at `.libtorch` in the workspace root.
#
# Order of preference:
#   1. a LibTorch the user already has: `$LIBTORCH` (a folder with include/ and lib/);
#   2. PyPI's torch==2.13.0 wheel (the version `tch` 0.26 is built against), installed once
#      into a virtual environment in a per-user cache and reused by every clone:
#      ${LLMS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llms-from-scratch-rs}/torch-2.13.0
#
# Idempotent: when the cache and the link are in place it only checks them and returns.
# `.cargo/config.toml` points `tch` at `.libtorch` and gives every binary, test and bench an
# rpath to `.libtorch/lib`, so plain `cargo build/run/test/bench` work afterwards.
set -euo pipefail

TORCH_VERSION="2.13.0"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
link="$root/.libtorch"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

has_libtorch() { [ -d "$1/include" ] && [ -d "$1/lib" ] && ls "$1"/lib/libtorch_cpu.* >/dev/null 2>&1; }

point_link_at() {
    local target="$1"
    if [ "$(readlink "$link" 2>/dev/null || true)" != "$target" ]; then
        ln -sfn "$target" "$link"
        say "linked .libtorch -> $target"
    fi
}

# 1. A LibTorch the user already has.
if [ -n "${LIBTORCH:-}" ]; then
    has_libtorch "$LIBTORCH" || die "LIBTORCH=$LIBTORCH has no include/ and lib/libtorch_cpu.*; unset it to install torch==$TORCH_VERSION from PyPI instead"
    point_link_at "$(cd "$LIBTORCH" && pwd)"
    say "using your LibTorch at $LIBTORCH"
    exit 0
fi

# 2. The per-user cache, shared by every clone.
cache="${LLMS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llms-from-scratch-rs}/torch-$TORCH_VERSION"
venv="$cache/venv"
stamp="$cache/.installed"

find_torch_dir() {
    local dir
    dir="$(ls -d "$venv"/lib/python3*/site-packages/torch 2>/dev/null | head -n 1)"
    [ -n "$dir" ] && has_libtorch "$dir" && printf '%s\n' "$dir"
}

# CCCL's headers, which torch's wheels leave out and c10d's NCCL backend needs at build time
# (shared/cpp/distributed_nccl.cpp); a small header-only wheel. Without it the build leaves
# the NCCL backend out with a warning.
add_cccl_headers() {
    local site
    site="$(dirname "$1")"
    [ -e "$site/nvidia/cu13/include/nv/target" ] || [ ! -f "$site/nvidia/nccl/include/nccl.h" ] && return 0
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "nvidia-cuda-cccl>=13,<14" \
        || say "could not install nvidia-cuda-cccl: the NCCL backend will be left out of the build"
}

if [ -f "$stamp" ] && torch_dir="$(find_torch_dir)"; then
    add_cccl_headers "$torch_dir"
    point_link_at "$torch_dir"
    exit 0
fi

python="${PYTHON:-$(command -v python3 || command -v python || true)}"
[ -n "$python" ] || die "Python 3 was not found. Install Python 3.10+ with pip and venv (e.g. 'apt-get install python3 python3-venv python3-pip'), or set LIBTORCH to an existing LibTorch $TORCH_VERSION folder."
"$python" -c 'import venv, ensurepip' 2>/dev/null || die "$python cannot create virtual environments (the venv/ensurepip modules are missing). Install them (e.g. 'apt-get install python3-venv') or set LIBTORCH."

mkdir -p "$cache"
# Only one clone installs at a time; the others wait and then reuse the result.
exec 9>"$cache/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [ -f "$stamp" ] && torch_dir="$(find_torch_dir)"; then
    add_cccl_headers "$torch_dir"
    point_link_at "$torch_dir"
    exit 0
fi

say "installing torch==$TORCH_VERSION into $venv (one time, about 5 GB)"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip --version >/dev/null 2>&1 || die "pip is missing from $venv. Install pip for $python (e.g. 'apt-get install python3-pip') or set LIBTORCH."
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet "torch==$TORCH_VERSION" \
    || die "pip could not install torch==$TORCH_VERSION (is PyPI reachable?). Retry, or set LIBTORCH to an existing LibTorch $TORCH_VERSION folder."
torch_dir="$(find_torch_dir)" || die "torch installed but $venv has no site-packages/torch with include/ and lib/"
add_cccl_headers "$torch_dir"
touch "$stamp"
point_link_at "$torch_dir"
say "LibTorch ready at $torch_dir"
