#!/usr/bin/env bash
# VNN-COMP interchange round trip, written to experiments/results/interchange/:
#   bench/          stverify bench roundtrip.toml (STBP, MILP, BaB)
#   export/         stverify export roundtrip.toml: ONNX, VNN-LIB (a union threat as one disjunctive file), instances.csv
#   stverify-vnnlib.csv   export/ run as a VNN-COMP tool would, by stverify's VNN-LIB path (run_instances.py)
# and the report of bench/ with that tool's results imported beside stverify's methods.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/experiments/results/interchange"
stverify=${STVERIFY:-$root/.venv/bin/stverify}
python=${PYTHON:-$root/.venv/bin/python}
rm -rf "$out" && mkdir -p "$out"
"$stverify" bench "$here/roundtrip.toml" --out "$out/bench" --workers 2
"$stverify" export "$here/roundtrip.toml" --out "$out/export"
"$python" "$here/run_instances.py" "$out/export" --out "$out/stverify-vnnlib.csv"
"$stverify" report "$out/bench" --import "stverify-vnnlib=$out/stverify-vnnlib.csv" --manifest "$out/export/manifest.json"
