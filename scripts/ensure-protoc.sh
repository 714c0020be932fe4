#!/usr/bin/env bash
# Installs what checks that the .proto files serve users of other languages:
# the standard protobuf compiler (Debian's protobuf-compiler, for `protoc`) and a
# Python virtual environment with grpcio-tools (from PyPI) under target/, whose
# client the test crates/dida/tests/python_client.rs generates and drives.
# Sourced by scripts/test.sh; exports DIDA_TEST_PYTHON, the environment's python.
if ! command -v protoc >/dev/null 2>&1; then
  echo "== installing protobuf-compiler (the standard protoc)" >&2
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: protoc is missing and this is not a Debian-like system (no apt-get); install protoc by hand" >&2
    false
  elif [[ $(id -u) -eq 0 ]]; then
    apt-get install -y protobuf-compiler || { apt-get update && apt-get install -y protobuf-compiler; }
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get install -y protobuf-compiler || { sudo apt-get update && sudo apt-get install -y protobuf-compiler; }
  else
    echo "error: protoc is missing; as root, run: apt-get install -y protobuf-compiler" >&2
    false
  fi
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
