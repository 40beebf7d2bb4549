#!/usr/bin/env bash
# Run a trade-off study and write its tables and figures:
#   experiments/tradeoff/run.sh NAME [bench options: --workers N, --dask ADDRESS, --data X.npz]
# runs experiments/tradeoff/NAME.toml into experiments/results/tradeoff/NAME[-<data file name>]/.
# Run the same command again after an interruption: it resumes.
set -euo pipefail
name=${1:?usage: run.sh NAME [--workers N] [--dask ADDRESS] [--data X.npz]}
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/experiments/results/tradeoff/$name"
args=("$@")
for i in "${!args[@]}"; do
  if [ "${args[$i]}" = --data ]; then out="$out-$(basename "${args[$((i + 1))]}" .npz)"; fi
done
stverify=${STVERIFY:-$root/.venv/bin/stverify}
resume=()
if [ -s "$out/results.jsonl" ]; then resume=(--resume); fi
start=$(date +%s)
"$stverify" bench "$here/$name.toml" --out "$out" "${resume[@]}" "$@"
echo "bench wall time: $(( $(date +%s) - start )) s" >&2
"$stverify" report "$out"
