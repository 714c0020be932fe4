#!/usr/bin/env bash
# Regenerates the evaluation report with one command: builds the release binary,
# makes sure Redis is installed, runs every benchmark (`dida bench storage`, with
# other --write-acks / --gossip-delay / --replication-factor too, `dida bench chain`,
# `dida bench idle`, `dida bench invoke`, `dida bench elastic`, `dida bench rebalance`), redis-benchmark against a redis-server it starts and stops
# and, through `dida bench resp`, against a storage node's RESP port
# itself, and a few `dida faults` runs; then `dida bench report` rewrites
# docs/evaluation.md and the plots docs/img/*.svg from the results. On a busy 2-core
# machine: about 21 minutes of benchmarks (the last full run: 1,250 s), plus the build
# (8.5 minutes when every workspace crate is rebuilt, seconds when it is up to date).
#
#   bash scripts/evaluate.sh              # the real run; commit docs/ afterwards
#   EVAL_QUICK=1 bash scripts/evaluate.sh # a smoke test of the script (short runs, fewer settings)
#
# Every benchmark writes its --json output to target/evaluation/<name>.jsonl and its
# stderr to <name>.log; target/evaluation/machine.txt, load.tsv and skipped.txt say
# where, on what and how busy. A part that cannot run (no Redis, no `dida bench idle`,
# no `dida faults --timeline`, a benchmark that failed) is left out with the reason
# in the report; the script fails only when nothing could be built or reported.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
out=target/evaluation
quick=${EVAL_QUICK:-0}
if [[ $quick == 1 ]]; then
  duration=0.5 warmup=0.2 settings_duration=0.5 faults_long=5 faults_short=4
else
  duration=3 warmup=0.5 settings_duration=2 faults_long=20 faults_short=10
fi

rm -rf "$out"
mkdir -p "$out/bin"
: >"$out/skipped.txt"

# Records that a part of the evaluation was left out, and why (shown in the report).
skip() {
  echo "   skipped $1: $2" >&2
  printf '%s: %s\n' "$1" "$2" >>"$out/skipped.txt"
}

# run NAME COMMAND...: stdout to NAME.jsonl, stderr to NAME.log; a failure is
# recorded and does not stop the evaluation.
run() {
  local name=$1
  shift
  echo "== $name: dida ${*:2}" >&2
  local t0=$SECONDS
  if "$@" >"$out/$name.jsonl" 2>"$out/$name.log"; then
    echo "   $((SECONDS - t0)) s" >&2
  else
    local status=$?
    rm -f "$out/$name.jsonl"
    skip "$name" "failed with exit status $status: $(tail -n 1 "$out/$name.log")"
  fi
}

echo "== building the release binary" >&2
source scripts/ensure-wasm-target.sh
cargo build --release -p dida
# A private copy: the nodes the benchmarks start run this same file, and a
# concurrent build of the same target directory cannot replace it mid-run.
cp target/release/dida "$out/bin/dida"
dida=$out/bin/dida
"$dida" bench report --help >/dev/null
built=$(date +%s)

redis=yes
if ! bash scripts/ensure-redis.sh; then
  redis=no
  skip "Redis" "redis-server could not be installed (scripts/ensure-redis.sh): no Redis rows, no redis-benchmark"
fi

{
  echo "commit: $(git describe --always --dirty)"
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cores: $(nproc)"
  echo "cpu: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "ram: $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "kernel: $(uname -sr)"
  echo "rustc: $(rustc --version)"
  echo "build_s: $((built - started))"
  if [[ $redis == yes ]]; then
    echo "redis: $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/Redis \1/p')"
  fi
} >"$out/machine.txt"

# The machine's load every 5 s while the benchmarks run: seconds, 1-minute load
# average, rustc processes (other people's builds on a shared machine).
(
  t0=$(date +%s)
  while sleep 5; do
    printf '%s\t%s\t%s\n' "$(($(date +%s) - t0))" "$(cut -d' ' -f1 /proc/loadavg)" \
      "$(pgrep -c -x rustc || true)"
  done
) >"$out/load.tsv" &
sampler=$!
redis_pid=
cleanup() {
  # 8. A storage node joining a loaded cluster (about 40 s with 100,000 keys).
if [[ $quick == 1 ]]; then
  run rebalance "$dida" bench rebalance --keys 5000 --before 1 --window 0.3 --json
else
  run rebalance "$dida" bench rebalance --json
fi

kill "$sampler" 2>/dev/null || true
  if [[ -n $redis_pid ]]; then kill "$redis_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

timing=(--duration "$duration" --warmup "$warmup")
redis_flag=()
[[ $redis == yes ]] || redis_flag=(--no-redis)

# 1. Storage against concurrency, beside Redis in the same harness.
run storage "$dida" bench storage --concurrency 1,4,16,64,128 "${timing[@]}" "${redis_flag[@]}" --json

# 2. redis-benchmark against a redis-server of our own, right after.
if [[ $redis == yes ]]; then
  for port in $(seq 16379 16399); do
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning \
      >"$out/redis-server.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 50); do
      if [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] || ! kill -0 "$redis_pid" 2>/dev/null; then
        break
      fi
      sleep 0.1
    done
    if kill -0 "$redis_pid" 2>/dev/null; then break; fi
    redis_pid=
  done
  if [[ -n $redis_pid ]]; then
    echo "== redis-benchmark -p $port -c 64 -d 16 -r 1000 -t get,set --csv" >&2
    if ! redis-benchmark -p "$port" -c 64 -d 16 -r 1000 -t get,set --csv \
      >"$out/redis-benchmark.csv" 2>"$out/redis-benchmark.log"; then
      rm -f "$out/redis-benchmark.csv"
      skip "redis-benchmark" "failed: $(tail -n 1 "$out/redis-benchmark.log")"
    fi
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=
  else
    skip "redis-benchmark" "no redis-server could be started on ports 16379-16399 (see $out/redis-server.log)"
  fi
fi

# 2b. redis-benchmark against a dida storage node's RESP port and a redis-server,
# the same flags in the same run, without and with pipelining (-P 1 and 16).
if [[ $redis == yes ]]; then
  if [[ $quick == 1 ]]; then
    run resp "$dida" bench resp --requests 10000 --json
  else
    run resp "$dida" bench resp --json
  fi
else
  skip "dida bench resp" "redis-server and redis-benchmark are not installed (scripts/ensure-redis.sh)"
fi

# 3. Chains of 1 to 20 operators against the RPC bound, and chain-1 over the HTTP
# gateway beside the gRPC path.
run chain "$dida" bench chain --lengths 1,2,5,10,20 --concurrency 1,16 --http "${timing[@]}" --json

# 4. The cost of --write-acks, --gossip-delay and --replication-factor: one fresh
# cluster per setting (R, acks, gossip delay in ms).
if [[ $quick == 1 ]]; then
  settings=("3 1 0" "3 2 0" "3 2 100")
else
  settings=("3 1 0" "3 2 0" "3 3 0" "3 1 10" "3 1 100" "3 2 10" "3 2 100" "1 1 0" "5 1 0")
fi
for setting in "${settings[@]}"; do
  read -r rf acks gossip <<<"$setting"
  run "settings-r$rf-acks$acks-gossip$gossip" "$dida" bench storage --no-redis --concurrency 1,16 \
    --duration "$settings_duration" --warmup "$warmup" \
    --replication-factor "$rf" --write-acks "$acks" --gossip-delay "$gossip" --json
done

# 4b. What durability costs: the same workloads in memory and with a data directory
# per node in each --fsync mode, one fresh cluster per mode.
run durability "$dida" bench storage --no-redis --concurrency 1,16 \
  --duration "$settings_duration" --warmup "$warmup" \
  --durability memory,never,batch,always --json

# 4c. What mutual TLS costs: the same workloads in plaintext and over mutual TLS,
# one fresh cluster (and one bench process) per transport.
run transport "$dida" bench storage --no-redis --concurrency 1,16 \
  --duration "$settings_duration" --warmup "$warmup" \
  --transport plaintext,tls --json

# 4d. What metrics cost: the same measurements without and with --metrics-listen on
# every node, one fresh cluster each (docs/observability.md).
run metrics-storage "$dida" bench storage --no-redis --concurrency 1,16 \
  --duration "$settings_duration" --warmup "$warmup" --metrics-overhead --rounds 3 --json
run metrics-chain "$dida" bench chain --lengths 1,5 --concurrency 1,16 \
  "${timing[@]}" --metrics-overhead --rounds 3 --json

# 5. Crashes: dida faults, the first run with a timeline when dida faults has one.
timeline=()
if "$dida" faults --help | grep -q -- '--timeline'; then
  timeline=(--timeline "$out/faults-timeline.jsonl")
else
  skip "crash timeline" "this dida faults has no --timeline flag yet, so there is no plot of operations over a crash"
fi
faults() {
  local label=$1
  shift
  echo "== faults-$label: dida faults $*" >&2
  local t0=$SECONDS
  if "$dida" faults --json "$@" >"$out/faults-$label.json" 2>"$out/faults-$label.log"; then
    echo "   passed, $((SECONDS - t0)) s" >&2
  else
    echo "   exit status $? (a failed check, or the run could not be carried out), $((SECONDS - t0)) s: see $out/faults-$label.log" >&2
  fi
}
faults acks2-crashes2 --write-acks 2 --crashes 2 --duration "$faults_long" --seed 1 "${timeline[@]}"
faults acks1-crashes1 --write-acks 1 --crashes 1 --duration "$faults_short" --seed 2
if [[ $quick != 1 ]]; then
  faults acks1-gossip100 --write-acks 1 --crashes 1 --gossip-delay 100 --duration "$faults_short" --seed 3
fi

# 6. Idle cost, when this dida has `dida bench idle`.
if "$dida" bench idle --help >/dev/null 2>&1; then
  if [[ $quick == 1 ]]; then
    run idle "$dida" bench idle --keys 10000 --duration 2 --json
  else
    run idle "$dida" bench idle --json
  fi
  # The cost per node and the detection time as the cluster grows (5 nodes above).
  for nodes in 10 20; do
    if [[ $quick == 1 ]]; then
      run "idle-nodes-$nodes" "$dida" bench idle --nodes "$nodes" --keys 100 --duration 2 --settle 4 --json
    else
      run "idle-nodes-$nodes" "$dida" bench idle --nodes "$nodes" --keys 1000 --json
    fi
  done
else
  skip "idle cost" "this dida has no \`dida bench idle\` yet"
fi

# 6b. One operator invocation per language: IncrementOperator built-in (Rust), and
# built from the Python and JavaScript samples by `dida build` (which installs
# componentize-py / componentize-js on first use), against the worker ping.
operators_out=$out/operators
mkdir -p "$operators_out"
invoke_args=()
for lang in python:Python js:JavaScript; do
  dir=${lang%%:*} label=${lang##*:}
  rm -rf "${operators_out:?}/$dir"
  cp -r "operators/$dir/samples/IncrementOperator" "$operators_out/$dir"
  if component=$("$dida" build "$operators_out/$dir" 2>"$out/build-$dir.log" | tail -n 1); then
    invoke_args+=(--operator "$label=$component")
  else
    skip "the $label operator" "dida build failed: $(tail -n 1 "$out/build-$dir.log")"
  fi
done
if [[ $quick == 1 ]]; then
  run invoke "$dida" bench invoke --invocations 20 "${invoke_args[@]}" --json
else
  run invoke "$dida" bench invoke "${invoke_args[@]}" --json
fi

# 7. Workers joining and leaving under a steady HTTP invocation load (about 15 s).
if [[ $quick == 1 ]]; then
  run elastic "$dida" bench elastic --phase 1 --warmup 0.3 --json
else
  run elastic "$dida" bench elastic --json
fi

# 8. A storage node joining a loaded cluster (about 40 s with 100,000 keys).
if [[ $quick == 1 ]]; then
  run rebalance "$dida" bench rebalance --keys 5000 --before 1 --window 0.3 --json
else
  run rebalance "$dida" bench rebalance --json
fi

kill "$sampler" 2>/dev/null || true
echo "elapsed_s: $(($(date +%s) - started))" >>"$out/machine.txt"
# A smoke test's report stays out of docs/.
report=docs
[[ $quick != 1 ]] || report=$out/report
mkdir -p "$report"
echo "== dida bench report --input $out --out $report" >&2
"$dida" bench report --input "$out" --out "$report" --method docs/evaluation-method.md
echo "== done in $(($(date +%s) - started)) s; results in $out, report in $report/evaluation.md" >&2
