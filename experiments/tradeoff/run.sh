#!/usr/bin/env bash
# Run a trade-off study and write its tables and figures:
#   experiments/tradeoff/run.sh NAME [--resume] [--out DIR] [bench options: --workers N, --dask ADDRESS, --data X.npz]
# runs experiments/tradeoff/NAME.toml into DIR (default experiments/results/tradeoff/NAME[-<data file name>]/).
# Without --resume the run is fresh: results already in DIR (the shipped ones, or an earlier run) are
# replaced (git restores the shipped ones).  After an interruption, continue with --resume.
set -euo pipefail
usage="usage: run.sh NAME [--resume] [--out DIR] [--workers N] [--dask ADDRESS] [--data X.npz]"
name=${1:?$usage}
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ -f "$here/$name.toml" ] || { echo "run.sh: no study $here/$name.toml; $usage" >&2; exit 2; }
out="$root/experiments/results/tradeoff/$name"
resume=0
custom_out=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --resume) resume=1 ;;
    --out) custom_out=${2:?--out needs a directory}; shift ;;
    --data) args+=("$1" "${2:?--data needs an .npz}"); out="$out-$(basename "$2" .npz)"; shift ;;
    *) args+=("$1") ;;
  esac
  shift
done
if [ -n "$custom_out" ]; then out=$custom_out; fi
stverify=${STVERIFY:-$root/.venv/bin/stverify}
bench=("$here/$name.toml" --out "$out")
if [ "$resume" = 1 ]; then
  bench+=(--resume)
elif [ -e "$out/results.jsonl" ]; then
  echo "run.sh: fresh run: replacing the results in $out (pass --resume to continue them instead)" >&2
  rm -rf "$out/results.jsonl" "$out/counterexamples" "$out/config.toml" "$out/figures" "$out"/*.md "$out"/*.csv
fi
start=$(date +%s)
"$stverify" bench "${bench[@]}" "${args[@]}"
echo "bench wall time: $(( $(date +%s) - start )) s" >&2
"$stverify" report "$out"
