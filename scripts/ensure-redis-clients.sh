#!/usr/bin/env bash
# Installs the Redis clients the RESP endpoint's test drives against dida
# (crates/dida/tests/resp.rs): redis-cli (Debian's redis-tools) and the Python
# `redis` client (from PyPI, pinned) in a virtual environment under target/.
# Sourced by scripts/test.sh; exports DIDA_TEST_REDIS_PYTHON, the environment's python.
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
if ! command -v redis-cli >/dev/null 2>&1; then
  echo "== installing redis-tools (redis-cli, for the RESP test)" >&2
  dida_apt_install redis-tools
fi
redis_py_version=8.2.0
redis_env="$(pwd)/target/python-redis"
if ! "$redis_env/bin/python" -c "import redis; assert redis.__version__ == '$redis_py_version'" >/dev/null 2>&1; then
  echo "== installing redis-py $redis_py_version into $redis_env (the RESP test)" >&2
  mkdir -p target
  python3 -m venv "$redis_env"
  "$redis_env/bin/pip" install --quiet "redis==$redis_py_version"
fi
export DIDA_TEST_REDIS_PYTHON="$redis_env/bin/python"
