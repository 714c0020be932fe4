#!/usr/bin/env bash
# Installs Redis (Debian's redis-server package: redis-server and redis-benchmark)
# when redis-server is missing, so that `dida bench storage` measures Redis beside
# dida (it starts redis-server itself) and scripts can run redis-benchmark. Sourced
# or run by the scripts that benchmark; the test suite never needs it. Installs
# through scripts/apt-install.sh.
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server (the outside baseline of dida bench storage)" >&2
  dida_apt_install redis-server
fi
