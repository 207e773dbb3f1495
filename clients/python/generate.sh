#!/usr/bin/env bash
# Regenerates the Python stubs from proto/raftsched.proto into src/raftsched/ (or into DIR when
# given: test.sh uses that to check the committed stubs are current). Needs grpcio-tools
# (GRPC_TOOLS_VERSION in test.sh); run from anywhere.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/src/raftsched}
python=${PYTHON:-python3}
"$python" -m grpc_tools.protoc -I "$here/../../proto" --python_out="$out" --grpc_python_out="$out" \
    "$here/../../proto/raftsched.proto"
# The stubs live in a package: the service module imports the messages relatively.
sed -i 's/^import raftsched_pb2 as raftsched__pb2$/from . import raftsched_pb2 as raftsched__pb2/' \
    "$out/raftsched_pb2_grpc.py"
