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
  RUSTC_BOOTSTRAP=1 RUSTFLAGS="-L /usr/lib/wasm32-wasi" /usr/bin/cargo build --release --locked \
    -Zbuild-std=std,panic_abort --target "$target" -p revision-injector
fi
cp "$out" policy.wasm
echo "policy.wasm: $(wc -c < policy.wasm) bytes" >&2
