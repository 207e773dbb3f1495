#!/usr/bin/env bash
# Tests the Python package against a real trio: makes (once) a venv from PyPI in
# target/python-venv, checks the committed stubs match proto/raftsched.proto, installs the package
# and runs tests/ against `raftsched dev` from RAFTSCHED_BIN (default: target/debug/raftsched).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
GRPC_TOOLS_VERSION=1.85.4
# The third-party reflection client the tests use (speaks v1alpha, as grpcurl 1.8 does).
GRPC_REFLECTION_VERSION=1.85.1
venv=${RAFTSCHED_PY_VENV:-$repo/target/python-venv}
export RAFTSCHED_BIN=${RAFTSCHED_BIN:-$repo/target/debug/raftsched}
[[ -x $RAFTSCHED_BIN ]] || { echo "python client test: no $RAFTSCHED_BIN (cargo build -p raftsched first)" >&2; exit 2; }
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c "import grpc_tools, grpc_reflection" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "grpcio-tools==$GRPC_TOOLS_VERSION" \
        "grpcio-reflection==$GRPC_REFLECTION_VERSION"
fi
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
PYTHON=$venv/bin/python "$here/generate.sh" "$fresh"
for f in raftsched_pb2.py raftsched_pb2_grpc.py; do
    cmp -s "$fresh/$f" "$here/src/raftsched/$f" \
        || { echo "clients/python/src/raftsched/$f is stale: run clients/python/generate.sh and commit it" >&2; exit 1; }
done
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$here" >/dev/null
cd "$fresh" && "$venv/bin/python" -m unittest discover -s "$here/tests" -v 2>&1
