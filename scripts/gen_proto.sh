#!/usr/bin/env bash
# Generate Python code for protos/rag/v1 into gen/ (ignored by git), importable as rag.v1.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
rm -rf gen/rag
mkdir -p gen
"$PYTHON" -m grpc_tools.protoc -I protos \
  --python_out=gen --grpc_python_out=gen --pyi_out=gen \
  protos/rag/v1/*.proto
