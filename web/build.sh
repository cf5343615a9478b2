#!/usr/bin/env bash
# Build the browser playground into web/pkg/ (the whole static site): the policy's logic for
# wasm32-unknown-unknown, wasm-bindgen's JS glue, and the page from web/static/.
# Installs what it needs: the Rust target (rustup) and wasm-bindgen-cli at exactly the
# wasm-bindgen version in web/Cargo.lock (the CLI refuses modules from another version).
set -euo pipefail
cd "$(dirname "$0")"
target=wasm32-unknown-unknown

if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target" >&2
fi

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if [ -z "$want" ]; then
  echo "web/Cargo.lock names no wasm-bindgen version" >&2
  exit 1
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
  echo "installing wasm-bindgen-cli $want (have: ${have:-none}); the first time takes a few minutes" >&2
  cargo install --locked wasm-bindgen-cli --version "$want" >&2
fi

# Not --locked: this lock file follows the policy crate's dependencies, which change without it;
# wasm-bindgen itself is pinned in Cargo.toml, so the CLI above still matches.
cargo build --release --target "$target"
rm -rf pkg
wasm-bindgen --target web --no-typescript --out-dir pkg "target/$target/release/revinject_web.wasm"
cp static/* pkg/
echo "web/pkg: $(wc -c < pkg/revinject_web_bg.wasm) bytes of wasm" >&2
