#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test of the
# workspace (unit, in-process clusters, and real processes on loopback).
# Needs only the Rust toolchain (and the machine's python3, node and npm, for the
# Python and JavaScript operators); the ensure-*.sh scripts install the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-wasm-target.sh
# The dashboard's browser test drives headless Chromium.
source scripts/ensure-chromium.sh
# The .proto files are checked with the standard protoc and a generated Python client.
source scripts/ensure-protoc.sh
# The RESP endpoint's test drives redis-cli and the Python redis client.
source scripts/ensure-redis-clients.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== protoc (the standard compiler) over every .proto"
protoc --proto_path=crates/proto/proto --descriptor_set_out=/dev/null crates/proto/proto/*.proto

echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== cargo test"
cargo test --workspace

# `cargo install --path crates/dida`, as docs/deploy.md tells users to install: in
# the dev profile, so it reuses the test build and only links.
echo "== cargo install --path crates/dida"
rm -rf target/install-check
cargo install --quiet --locked --debug --path crates/dida --root target/install-check
target/install-check/bin/dida --version

# The Kubernetes manifests and systemd units, offline: rendered with kubectl
# kustomize, validated against the Kubernetes schemas and by checkov, and pod
# ordinals checked against node ids and data directories (docs/deploy.md).
bash scripts/validate-kubernetes.sh

# A whole cluster in podman containers of the FROM-scratch image, mutual TLS,
# a SIGKILL and a rolling upgrade under load: no acknowledged write lost
# (docs/containers.md). Builds the image first (a static musl release build in
# target/image). Skips, saying why, only where podman cannot run a container.
bash scripts/test-containers.sh

# CI machines have bounded disk; say how much the build took.
echo "== build size: $(du -sh target 2>/dev/null | cut -f1)"
