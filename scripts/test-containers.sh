#!/usr/bin/env bash
# A whole dida cluster in containers, as a test (docs/containers.md):
#
#   five storage nodes, two workers and a scheduler, each its own container of the
#   image scripts/build-image.sh builds, on one podman network, every node started
#   with `--listen 0.0.0.0:PORT --url http://NAME:PORT` and reached by its
#   container's name only; mutual TLS (certificates made by `dida certs` in a
#   container, on a volume mounted read-only into every node); storage data
#   directories on named volumes (fsync always, replication factor 3, write-acks 2).
#
# Then, through the HTTP gateway (published on 127.0.0.1 only): the course's
# applications and the shop. Under load (clients writing unique keys and recording
# every acknowledged write, and invocations through the gateway): a storage
# container is killed (SIGKILL) and started again on its volume; then every storage
# container is replaced, one at a time, by one of a newly built image (rolling
# upgrade: SIGTERM, a new container on the same volume, ready before the next).
# Finally every acknowledged write is read back: none may be lost.
#
#   bash scripts/test-containers.sh
#
# Installs what it needs (podman, runc, busybox-static, curl and jq from Debian's
# packages; musl-tools and the Rust targets through scripts/build-image.sh). Skips,
# with exit status 0 and a line saying why, only when podman cannot run a container
# on this machine at all. Everything it creates carries the label dida.test and is
# removed on exit (DIDA_TEST_KEEP=1 keeps it, to look at after a failure). Every
# wait is a poll with a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

step() { echo "== [$((SECONDS - started))s] $*" >&2; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

label=dida.test=containers
net=dida-test
image=localhost/dida:latest
next_image=localhost/dida:next
tools_image=localhost/dida-test-tools:latest
probe_image=localhost/dida-test-probe:latest
storage_ids=(s1 s2 s3 s4 s5)
worker_ids=(w1 w2)
peers=$(for id in "${storage_ids[@]}"; do printf '%s=http://dida-%s:7001,' "$id" "$id"; done)
peers=${peers%,}
writers=3
work=$(mktemp -d)
token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

source scripts/ensure-podman.sh
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
# The test's client container needs a shell (for its write loops): busybox, static.
[[ $(dpkg-query -W -f '${Status}' busybox-static 2>/dev/null) == "install ok installed" ]] ||
  missing+=(busybox-static)
if [[ ${#missing[@]} -gt 0 ]]; then
  dida_apt_install "${missing[@]}"
fi

podman_quiet() { podman "$@" 2> >(grep -v 'failed to connect to syslog' >&2); }

containers() { podman ps -a --filter "label=$label" --format '{{.Names}}' 2>/dev/null || true; }

remove_all() {
  local names
  names=$(containers)
  if [[ -n $names ]]; then
    # shellcheck disable=SC2086
    podman rm -f -v -t 0 $names >/dev/null 2>&1 || true
  fi
  podman network rm -f "$net" >/dev/null 2>&1 || true
  local volumes
  volumes=$(podman volume ls --filter "label=$label" --format '{{.Name}}' 2>/dev/null || true)
  if [[ -n $volumes ]]; then
    # shellcheck disable=SC2086
    podman volume rm -f $volumes >/dev/null 2>&1 || true
  fi
}

gateway_loop=
cleanup() {
  local status=$?
  set +e
  if [[ -n $gateway_loop ]]; then
    kill "$gateway_loop" 2>/dev/null
    wait "$gateway_loop" 2>/dev/null
  fi
  if [[ $status -ne 0 ]]; then
    for name in $(containers); do
      echo "---- last lines of $name" >&2
      podman logs --tail 25 "$name" 2>&1 | grep -v 'failed to connect to syslog' >&2
    done
  fi
  if [[ -n ${DIDA_TEST_KEEP:-} ]]; then
    echo "DIDA_TEST_KEEP: kept the containers, network $net, volumes and $work" >&2
    exit "$status"
  fi
  remove_all
  podman rmi -f "$tools_image" "$probe_image" "$next_image" >/dev/null 2>&1
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
remove_all # what an interrupted earlier run left

step "can podman run a container here? (a FROM scratch image of busybox, nothing pulled)"
mkdir -p "$work/probe"
cp /bin/busybox "$work/probe/busybox"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox"]\n' >"$work/probe/Containerfile"
if ! podman build --quiet -t "$probe_image" "$work/probe" 2>"$work/probe.log" >/dev/null ||
  ! podman run --rm --label "$label" "$probe_image" true >>"$work/probe.log" 2>&1; then
  echo "SKIP: podman cannot run a container on this machine (CONTAINERS_CONF=$CONTAINERS_CONF):" >&2
  grep -v 'failed to connect to syslog' "$work/probe.log" | tail -5 >&2
  exit 0
fi

step "building the image (scripts/build-image.sh), then a newly built one for the upgrade"
build_started=$SECONDS
bash scripts/build-image.sh latest
build_seconds=$((SECONDS - build_started))
old_id=$(podman image inspect --format '{{.Id}}' "$image")
image_bytes=$(podman image inspect --format '{{.Size}}' "$image")
[[ $(podman run --rm --label "$label" "$image" storage --help) == *--listen* ]] ||
  fail "this dida has no --listen flag; the test needs \`--listen 0.0.0.0:PORT --url http://NAME:PORT\`"

# The test's client: the image plus busybox (a shell for the write loops, wget for
# /readyz). Test-only; the image itself has no shell.
mkdir -p "$work/tools"
cp /bin/busybox "$work/tools/busybox"
printf 'FROM %s\nCOPY busybox /bin/busybox\nENTRYPOINT []\n' "$image" >"$work/tools/Containerfile"
podman build --quiet -t "$tools_image" "$work/tools" >/dev/null

step "network $net, volumes, certificates for the container names (dida certs, in a container)"
podman network create --label "$label" "$net" >/dev/null
podman volume create --label "$label" dida-test-certs >/dev/null
for id in "${storage_ids[@]}"; do podman volume create --label "$label" "dida-test-$id" >/dev/null; done
hosts=$(for id in "${storage_ids[@]}" "${worker_ids[@]}" sched; do printf 'dida-%s,' "$id"; done)
# The certificates volume is mounted at /data, so it starts owned by the image's
# user (copied up from the image), who writes the keys readable by itself only.
podman_quiet run --rm --label "$label" -v dida-test-certs:/data "$image" certs --out /data/tls \
  --storage "$(IFS=,; echo "${storage_ids[*]}")" --workers "$(IFS=,; echo "${worker_ids[*]}")" \
  --scheduler sched --clients client --hosts "${hosts}localhost,127.0.0.1" >/dev/null

# Every node and client mounts the certificates read-only and runs with --tls-dir.
# --dns: only the network's own resolver (aardvark-dns, on its gateway), which
# answers container names and forwards the rest. By default podman also lists the
# host's resolvers, and musl's resolver asks every listed server at once and takes
# the first answer: the host's NXDOMAIN for a container name sometimes wins
# (measured: 3 lookups of 200 failed).
gateway_ip=$(podman network inspect "$net" --format '{{range .Subnets}}{{.Gateway}}{{end}}')
common=(--label "$label" --network "$net" --dns "$gateway_ip" -v dida-test-certs:/certs:ro
  -e DIDA_TLS_DIR=/certs/tls -e RUST_LOG=info)

start_storage() { # ID IMAGE
  podman_quiet run -d --name "dida-$1" "${common[@]}" -v "dida-test-$1:/data" "$2" \
    storage --id "$1" --url "http://dida-$1:7001" --listen 0.0.0.0:7001 --peers "$peers" \
    --data-dir /data --fsync always --replication-factor 3 --write-acks 2 \
    --metrics-listen 0.0.0.0:9090 >/dev/null
}

# A command in the client container (dida, busybox), which knows every address by name.
tool() { podman exec dida-tools "$@"; }
# (busybox 1.35's wget -T crashes here: the deadline is timeout's.)
ready() { timeout 10 podman exec dida-tools wget -q -O /dev/null "http://dida-$1:9090/readyz" 2>/dev/null; }

wait_until() { # DEADLINE_SECONDS WHAT COMMAND…
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || fail "$what: not within the deadline"
    sleep 0.5
  done
}

ip_of() { podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
members_json() { tool dida cluster members --json 2>/dev/null; }
# Every storage node alive in the configuration, as the peers know it.
all_alive() {
  local json
  json=$(members_json) || return 1
  [[ $(jq '[.members[] | select(.state == "alive")] | length' <<<"$json") -eq ${#storage_ids[@]} ]]
}
is_failed() { # ID
  local json
  json=$(members_json) || return 1
  [[ $(jq -r --arg id "$1" '.members[] | select(.id == $id) | .state' <<<"$json") != alive ]]
}

step "starting 5 storage nodes, a scheduler, 2 workers and a client container"
# The client container: environment for `dida kv`, `dida cluster` and `dida run`.
podman_quiet run -d --name dida-tools "${common[@]}" -e "DIDA_PEERS=$peers" \
  -e DIDA_SCHEDULER=http://dida-sched:3000 -v "$work:/out:U" -v "$PWD/examples:/examples:ro" \
  "$tools_image" /bin/busybox sleep 100000 >/dev/null
# Its shell's commands (busybox's applets) and dida on the PATH.
podman exec --user 0 dida-tools /bin/busybox --install -s /bin
podman exec --user 0 dida-tools /bin/busybox ln -s /dida /bin/dida
for id in "${storage_ids[@]}"; do start_storage "$id" "$image"; done
podman_quiet run -d --name dida-sched "${common[@]}" -e "DIDA_CLUSTER_TOKEN=$token" \
  -p 127.0.0.1::8080 "$image" \
  scheduler --id sched --url http://dida-sched:3000 --listen 0.0.0.0:3000 --storage "$peers" \
  --replication-factor 3 --http-listen 0.0.0.0:8080 --metrics-listen 0.0.0.0:9090 >/dev/null
for id in "${worker_ids[@]}"; do
  podman_quiet run -d --name "dida-$id" "${common[@]}" "$image" \
    worker --id "$id" --url "http://dida-$id:4001" --listen 0.0.0.0:4001 --storage "$peers" \
    --scheduler http://dida-sched:3000 --replication-factor 3 --metrics-listen 0.0.0.0:9090 >/dev/null
done
gateway=http://$(podman port dida-sched 8080)
auth=(-H "Authorization: Bearer $token")
for id in "${storage_ids[@]}" sched "${worker_ids[@]}"; do
  wait_until 90 "dida-$id ready (/readyz)" ready "$id"
done
wait_until 60 "every storage node alive" all_alive
workers_alive() {
  [[ $(curl -sf "${auth[@]}" "$gateway/v1/workers" |
    jq '[.workers[] | select(.state == "alive")] | length') -eq ${#worker_ids[@]} ]]
}
wait_until 60 "both workers registered with the scheduler" workers_alive
echo "   cluster up: $(members_json | jq -c '[.members[] | "\(.id)=\(.url) \(.state)"]')" >&2
echo "   every node listens on 0.0.0.0 and is known to its peers by its container name only" >&2
for name in $(containers); do
  [[ $(podman inspect --format '{{.Config.User}}' "$name") == 65532:65532 ]] ||
    fail "$name does not run as 65532:65532"
done
echo "   every container runs as 65532:65532 (not root)" >&2

step "the gateway refuses a request without the cluster token (401) and takes one with it"
code=$(curl -s -o /dev/null -w '%{http_code}' "$gateway/v1/apps")
[[ $code == 401 ]] || fail "the gateway answered $code without a token, not 401"
curl -sf "${auth[@]}" "$gateway/v1/apps" >/dev/null || fail "GET /v1/apps with the token failed"

step "the course's applications and the shop through the HTTP gateway"
tool dida kv populate /examples/puppetmaster/data/course.txt >/dev/null
tool dida kv populate /examples/puppetmaster/data/shop.txt >/dev/null
for app in add-update increment order; do
  code=$(curl -s -o "$work/put.json" -w '%{http_code}' -X PUT "${auth[@]}" \
    --data-binary "@examples/puppetmaster/apps/$app.txt" "$gateway/v1/apps/$app")
  [[ $code == 201 || $code == 200 ]] || fail "registering $app: $code $(cat "$work/put.json")"
done
invoke() { # APP INPUT -> the execution's JSON
  curl -s -m 60 "${auth[@]}" -d "$(jq -cn --arg input "$2" '{input: $input}')" \
    "$gateway/v1/apps/$1/invoke"
}
expect() { # APP INPUT STATUS [ERROR_TEXT]
  local json
  json=$(invoke "$1" "$2")
  [[ $(jq -r .status <<<"$json") == "$3" ]] || fail "$1 $2: expected $3, got $json"
  if [[ -n ${4:-} ]]; then
    jq -r .error <<<"$json" | grep -qF "$4" || fail "$1 $2: expected the error \"$4\", got $json"
  fi
  echo "   $1 $2: $(jq -c '{status, outputs, error, workers: [.runs[]?.worker_id]}' <<<"$json")" >&2
}
expect add-update 23 succeeded
[[ $(tool dida kv read 23) == *success* ]] || fail "key 23 is not \"success\": $(tool dida kv read 23)"
expect increment 1 succeeded
expect order book succeeded
expect order pen succeeded
expect order pen failed "out of stock: pen"
echo "   key 23: $(tool dida kv read 23 | tr -s ' ')" >&2

# The load: $writers loops in the client container, each writing unique keys and
# recording the acknowledged ones (exit status 0) with their values; and
# invocations through the gateway from this machine.
step "load: $writers clients writing unique keys (dida kv write), invocations through the gateway"
for j in $(seq 1 "$writers"); do
  podman exec -d dida-tools /bin/busybox sh -c '
    j=$1; i=0
    while [ ! -e /out/stop ]; do
      i=$((i + 1)); k="load-$j-$i"; v="v$j.$i.$RANDOM"
      if /dida kv --deadline 5000 write "$k" "$v" >/dev/null 2>>/out/errors-$j; then
        echo "$k $v" >>/out/acked-$j
      else
        echo "$k" >>/out/unacked-$j
      fi
    done
    touch /out/done-$j' sh "$j" >/dev/null
done
(
  ok=0 failed=0
  while [[ ! -e $work/stop ]]; do
    if [[ $(curl -s -m 30 "${auth[@]}" -d '{"operators": ["EchoOperator"], "input": "hi"}' \
      "$gateway/v1/invoke" | jq -r .status 2>/dev/null) == succeeded ]]; then
      ok=$((ok + 1))
    else
      failed=$((failed + 1))
    fi
    sleep 0.2
  done
  echo "$ok $failed" >"$work/gateway-load"
) &
gateway_loop=$!
lines() { # FILE… (missing ones count 0)
  local n=0 file
  for file in "$@"; do
    if [[ -f $file ]]; then n=$((n + $(wc -l <"$file"))); fi
  done
  echo "$n"
}
acked() { lines "$work"/acked-*; }
acked_over() { [[ $(acked) -gt $1 ]]; }
wait_until 30 "the first acknowledged writes" acked_over 20

step "kill dida-s3 (SIGKILL) under load, wait until the others declare it failed, start it again"
kill_started=$SECONDS
podman_quiet kill dida-s3 >/dev/null
wait_until 30 "s3 declared failed" is_failed s3
declared=$((SECONDS - kill_started))
before=$(acked)
wait_until 30 "writes acknowledged while s3 is down" acked_over $((before + 10))
podman_quiet start dida-s3 >/dev/null
wait_until 90 "dida-s3 ready again" ready s3
wait_until 90 "s3 alive again" all_alive
recovered=$(podman logs dida-s3 2>&1 | grep 'recovered the store' | tail -1 | grep -o 'keys=[0-9]*')
[[ ${recovered#keys=} -gt 0 ]] || fail "s3 did not recover records from its volume ($recovered)"
echo "   s3 recovered its records from its volume ($recovered)" >&2
echo "   s3 declared failed after ${declared}s, back and alive $((SECONDS - kill_started))s after the kill" >&2

step "rolling upgrade: each storage container replaced by one of $next_image (SIGTERM, same volume)"
bash scripts/build-image.sh next
new_id=$(podman image inspect --format '{{.Id}}' "$next_image")
[[ $new_id != "$old_id" ]] || fail "the new build is the same image as the old one"
upgrade_started=$SECONDS
for id in "${storage_ids[@]}"; do
  t=$SECONDS
  before=$(acked)
  old_ip=$(ip_of "dida-$id")
  podman_quiet stop -t 30 "dida-$id" >/dev/null
  stopped=$((SECONDS - t))
  code=$(podman inspect --format '{{.State.ExitCode}}' "dida-$id")
  [[ $code == 0 ]] || fail "dida-$id exited with status $code on SIGTERM"
  podman_quiet rm -v "dida-$id" >/dev/null
  start_storage "$id" "$next_image"
  wait_until 90 "dida-$id (new image) ready" ready "$id"
  wait_until 90 "every storage node alive after replacing $id" all_alive
  wait_until 30 "writes acknowledged after replacing $id" acked_over $((before + 5))
  echo "   $id: stopped in ${stopped}s (exit 0), replaced and ready in $((SECONDS - t))s" \
    "(address $old_ip -> $(ip_of "dida-$id")); $(acked) writes acknowledged so far" >&2
done
for id in "${storage_ids[@]}"; do
  [[ $(podman inspect --format '{{.Image}}' "dida-$id") == "$new_id" ]] ||
    fail "dida-$id does not run the new image"
done
upgrade_seconds=$((SECONDS - upgrade_started))

step "stopping the load"
touch "$work/stop"
for j in $(seq 1 "$writers"); do
  wait_until 30 "writer $j to stop" test -e "$work/done-$j"
done
wait "$gateway_loop"
gateway_loop=
read -r gateway_ok gateway_failed <"$work/gateway-load"
total_acked=$(acked)
total_unacked=$(lines "$work"/unacked-*)
echo "   $total_acked writes acknowledged, $total_unacked not (failed or timed out: allowed)" >&2
if [[ $total_unacked -gt 0 ]]; then
  cat "$work"/errors-* 2>/dev/null | sed 's/^/     /' | sort | uniq -c | sort -rn | head -3 >&2 || true
fi
echo "   gateway invocations under load: $gateway_ok succeeded, $gateway_failed failed" >&2
[[ $gateway_ok -gt 0 ]] || fail "no invocation through the gateway succeeded under load"

step "reading back every acknowledged write (dida kv read, through the client's routing)"
cat "$work"/acked-* >"$work/acked"
# Reads every key of /out/check; writes those not read back with their value to
# /out/missing (and why, to /out/missing-why).
verify() {
  tool sh -c '
    : >/out/missing; : >/out/missing-why
    while read -r k v; do
      if ! got=$(dida kv read "$k" 2>&1); then
        echo "$k $v" >>/out/missing; echo "$k: $got" >>/out/missing-why
      else
        case "$got" in *"$v"*) ;; *) echo "$k $v" >>/out/missing; echo "$k: read $got" >>/out/missing-why ;; esac
      fi
    done </out/check'
  [[ ! -s $work/missing ]]
}
verify_started=$SECONDS
cp "$work/acked" "$work/check"
if ! verify; then
  # A replica still catching up may answer first: read those keys again, until
  # the deadline.
  echo "   $(wc -l <"$work/missing") not read back at the first pass: $(head -3 "$work/missing-why" | tr '\n' ';')" >&2
  deadline=$((SECONDS + 60))
  until cp "$work/missing" "$work/check" && verify; do
    ((SECONDS < deadline)) || fail "$(wc -l <"$work/missing") acknowledged writes lost: $(head -5 "$work/missing-why")"
    sleep 2
  done
fi
echo "   all $total_acked acknowledged writes read back with their values ($((SECONDS - verify_started))s)" >&2

step "every storage node's records at rest: each acknowledged key on its 3 replicas"
tool dida kv --json list >"$work/list.json"
# "key value copies" for every record, then per acknowledged key how many nodes
# hold its value.
jq -r 'select(.event == "record") | "\(.key) \(.value)"' "$work/list.json" |
  LC_ALL=C sort | uniq -c | awk '{print $2, $3, $1}' >"$work/copies"
LC_ALL=C sort "$work/acked" >"$work/acked-sorted"
held=$(LC_ALL=C join "$work/acked-sorted" "$work/copies" | awk '$2 == $3 {print $4}' |
  sort | uniq -c | awk '{printf "%s keys on %s nodes; ", $1, $2}')
echo "   $held" >&2

step "the shop once more through the gateway, on the upgraded cluster"
expect order book succeeded

echo "== [$((SECONDS - started))s] PASS: image $((image_bytes / 1000000)) MB built in ${build_seconds}s;" \
  "s3 killed and back; rolling upgrade of 5 storage containers in ${upgrade_seconds}s;" \
  "$total_acked acknowledged writes, 0 lost" >&2
