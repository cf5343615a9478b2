#!/usr/bin/env bash
# Build policy.wasm for wasm32-wasip1. Installs the target with rustup; where rustup cannot add
# it, falls back to Debian's Rust toolchain with a rebuilt std (the recipe in DEVELOPERS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
target=wasm32-wasip1
out=target/$target/release/revision_injector.wasm

if rustup target list --installed 2>/dev/null | grep -qx "$target" || rustup target add "$target" >&2; then
  cargo build --release --locked --target "$target" -p revision-injector
else
  echo "rustup cannot add $target; using Debian's rustc-web with -Zbuild-std" >&2
  if ! [ -x /usr/bin/cargo ] || ! [ -d /usr/lib/wasm32-wasi ]; then
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y rustc-web cargo-web rust-web-src lld-22 wasi-libc >&2
  fi
  # RUSTFLAGS replaces .cargo/config.toml's target rustflags: repeat them.
  RUSTC_BOOTSTRAP=1 RUSTFLAGS="-L /usr/lib/wasm32-wasi -C target-cpu=mvp" /usr/bin/cargo build --release --locked \
    -Zbuild-std=std,panic_abort --target "$target" -p revision-injector
fi
# binaryen's optimizer takes ~13 % off rustc's output at no cost in speed (measured with
# `revinject bench`; -Oz is no smaller and slower). Installed when missing; without it the
# module is shipped as rustc built it, with a warning.
if ! command -v wasm-opt >/dev/null 2>&1; then
  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y binaryen) >&2 || true
fi
if command -v wasm-opt >/dev/null 2>&1; then
  wasm-opt -O3 --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types \
    "$out" -o policy.wasm.tmp
  mv policy.wasm.tmp policy.wasm
else
  echo "warning: wasm-opt (binaryen) is not available; policy.wasm is not size-optimized" >&2
  cp "$out" policy.wasm
fi
echo "policy.wasm: $(wc -c < policy.wasm) bytes" >&2
