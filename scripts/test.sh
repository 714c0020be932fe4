#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test of the
# workspace (unit, in-process clusters, and real processes on loopback).
# Needs only the Rust toolchain; everything else is built by cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-wasm-target.sh
# The dashboard's browser test drives headless Chromium.
source scripts/ensure-chromium.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== cargo test"
cargo test --workspace

# CI machines have bounded disk; say how much the build took.
echo "== build size: $(du -sh target 2>/dev/null | cut -f1)"
