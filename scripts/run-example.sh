#!/usr/bin/env bash
# Builds dida and brings a whole cluster up on this machine with one command: the
# PuppetMaster runs examples/puppetmaster/demo.txt in batch mode (five storage
# nodes, three workers and a scheduler, each a real process started by the
# PuppetMaster's own PCS), loads the data, runs the course's classic applications
# and the shop application, prints every record of every node, stops the nodes
# and exits. Needs only the Rust toolchain.
#
#   bash scripts/run-example.sh                # readable tables
#   bash scripts/run-example.sh --json         # one JSON event per line
#   bash scripts/run-example.sh --tls          # every node and client over mutual TLS
#   bash scripts/run-example.sh SCRIPT [...]   # another script (examples/puppetmaster/*.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-wasm-target.sh

cargo build --release --quiet -p dida
script=examples/puppetmaster/demo.txt
if [[ $# -gt 0 && $1 != -* ]]; then
  script=$1
  shift
fi
args=()
tls=()
for arg in "$@"; do
  if [[ $arg == --tls ]]; then
    # A fresh development CA and certificates for the nodes the demo starts; the
    # PuppetMaster presents `client` and passes the directory on to every node.
    certs=$(mktemp -d)
    trap 'rm -rf "$certs"' EXIT
    target/release/dida certs --out "$certs/tls" --storage s1,s2,s3,s4,s5 \
      --workers w1,w2,w3 --scheduler sched >&2
    tls=(--tls-dir "$certs/tls")
  else
    args+=("$arg")
  fi
done
echo "== dida puppetmaster $script --batch ${tls[*]} ${args[*]}" >&2
target/release/dida puppetmaster "$script" --batch "${tls[@]}" "${args[@]}"
