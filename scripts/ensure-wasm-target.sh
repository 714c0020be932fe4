#!/usr/bin/env bash
# Installs the Rust target the operators are built for (wasm32-wasip2) when it is
# missing. Sourced by the README's commands, so a fresh machine with only the Rust
# toolchain needs no step by hand.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "== installing the Rust target wasm32-wasip2 (operators are WebAssembly components)" >&2
  rustup target add wasm32-wasip2
fi
