#!/usr/bin/env bash
# Installs Redis (Debian's redis-server package: redis-server and redis-benchmark)
# when redis-server is missing, so that `dida bench storage` measures Redis beside
# dida (it starts redis-server itself) and scripts can run redis-benchmark. Sourced
# or run by the scripts that benchmark; the test suite never needs it. Installs with
# apt-get as root, or through sudo when not root; anywhere else it says what to run
# and fails.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server (the outside baseline of dida bench storage)" >&2
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: redis-server is missing and this is not a Debian-like system (no apt-get); install Redis by hand" >&2
    false
  elif [[ $(id -u) -eq 0 ]]; then
    apt-get install -y redis-server || { apt-get update && apt-get install -y redis-server; }
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get install -y redis-server || { sudo apt-get update && sudo apt-get install -y redis-server; }
  else
    echo "error: redis-server is missing; as root, run: apt-get install -y redis-server" >&2
    false
  fi
fi
