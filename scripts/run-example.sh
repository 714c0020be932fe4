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
#   bash scripts/run-example.sh --release      # the optimised build, as deployed and benchmarked
#   bash scripts/run-example.sh SCRIPT [...]   # another script (examples/puppetmaster/*.txt)
#
# By default it builds the development profile, the one `scripts/test.sh` builds too:
# from a clean clone that takes about a third of the CPU time of an optimised build
# (wasmtime's compiler is optimised in both, so operators still compile fast), and the
# test suite then reuses it. The demo's few dozen requests do not feel the
# difference; benchmarks (`scripts/evaluate.sh`) and installs use `--release`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-wasm-target.sh

script=examples/puppetmaster/demo.txt
if [[ $# -gt 0 && $1 != -* ]]; then
  script=$1
  shift
fi
profile=debug
cargo_profile=()
tls=false
args=()
for arg in "$@"; do
  case $arg in
    --release) profile=release cargo_profile=(--release) ;;
    --tls) tls=true ;;
    *) args+=("$arg") ;;
  esac
done

cargo build "${cargo_profile[@]}" --quiet -p dida
dida=target/$profile/dida
tls_args=()
if $tls; then
  # A fresh development CA and certificates for the nodes the demo starts; the
  # PuppetMaster presents `client` and passes the directory on to every node.
  certs=$(mktemp -d)
  trap 'rm -rf "$certs"' EXIT
  "$dida" certs --out "$certs/tls" --storage s1,s2,s3,s4,s5 \
    --workers w1,w2,w3 --scheduler sched >&2
  tls_args=(--tls-dir "$certs/tls")
fi
echo "== dida puppetmaster $script --batch ${tls_args[*]} ${args[*]}" >&2
"$dida" puppetmaster "$script" --batch "${tls_args[@]}" "${args[@]}"
