#!/usr/bin/env bash
# Brings a local storage cluster up (5 `dida storage` processes on loopback,
# replication factor 3), loads the course's example data, runs reads, writes and a
# compare-and-swap through `dida kv`, lists every record of every node, and stops
# the cluster. Needs only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-wasm-target.sh

cargo build --release --quiet -p dida
dida=target/release/dida
base=${DIDA_BASE_PORT:-17100}
peers=""
for i in 1 2 3 4 5; do
  peers+="${peers:+,}s$i=http://127.0.0.1:$((base + i))"
done

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

for i in 1 2 3 4 5; do
  RUST_LOG=${RUST_LOG:-warn} "$dida" storage --id "s$i" --url "http://127.0.0.1:$((base + i))" \
    --gossip-delay 0 --peers "$peers" --anti-entropy-interval 200 &
  pids+=($!)
done

kv() { echo "\$ dida kv $*" >&2; "$dida" kv --peers "$peers" "$@"; }
for i in 1 2 3 4 5; do   # wait until every node answers (at most ~10 s)
  for _ in $(seq 100); do kv status --server "s$i" >/dev/null 2>&1 && break; sleep 0.1; done 2>/dev/null
done

kv populate examples/storage/course-data.txt
kv read 23
kv cas 23 11 success
kv cas 23 11 failure
kv write counter 0
kv cas counter 0 1
kv read counter
sleep 1   # let gossip and anti-entropy settle before listing every replica
kv list
kv status
