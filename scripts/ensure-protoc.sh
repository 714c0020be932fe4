#!/usr/bin/env bash
# Installs what checks that the .proto files serve users of other languages:
# the standard protobuf compiler (Debian's protobuf-compiler, for `protoc`) and a
# Python virtual environment with grpcio-tools (from PyPI) under target/, whose
# client the test crates/dida/tests/python_client.rs generates and drives.
# Sourced by scripts/test.sh; exports DIDA_TEST_PYTHON, the environment's python.
source "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
if ! command -v protoc >/dev/null 2>&1; then
  echo "== installing protobuf-compiler (the standard protoc)" >&2
  dida_apt_install protobuf-compiler
fi
# Pinned, so the generated client is the same on every machine.
grpc_tools_version=1.85.4
python_env="$(pwd)/target/python-grpc"
if ! "$python_env/bin/python" -c "import grpc_tools" >/dev/null 2>&1; then
  echo "== installing grpcio-tools $grpc_tools_version into $python_env (the Python client test)" >&2
  mkdir -p target
  python3 -m venv "$python_env"
  "$python_env/bin/pip" install --quiet "grpcio-tools==$grpc_tools_version"
fi
export DIDA_TEST_PYTHON="$python_env/bin/python"
