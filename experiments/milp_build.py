"""Building the SCIP model of a MILP (issue 18), old and new stverify side by side.

Instances: the VVN GTSRB 4f model (``--vvn DIR`` holding the ONNX files of github.com/sammsaski/VVN,
never committed; skipped without it; input uniform in [0, 1] with seed 1, its predicted label,
``linf:eps=1/255``) and zoo medmnist (test #0, ``linf:eps=8/255`` and ``anyframes:k=1,eps=8/255``).
For each, in a fresh process per version (old: --old, the ``src`` of e.g. a ``git archive`` of
commit 011dddd; new: this checkout), one torch thread, old and new alternating --reps times:
  * build: the MILP encoded once (STBP big-M, relaxed as every solve relaxes it), then
    ``backends.scip.build`` timed (not freeing the model it returns): the median of 3 builds;
  * milp: ``verify(method="milp", attack=False, timeout=120)``: its time, and the build time it
    reports (``stats["build_s"]``: the old code built the model again for every competitor).
Results: results/milp_build/milp_build.jsonl and milp_build.md.

    .venv/bin/python experiments/milp_build.py --old /tmp/old011/src --vvn /tmp/vvn
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEW_SRC = HERE.parent / "src"
RESULTS = HERE / "results" / "milp_build"

CHILD = """
import json, statistics, time
import numpy as np, torch
torch.set_num_threads(1)
import stverify as sv
from stverify.encodings.backends import scip
from stverify.encodings.milp import encode, relax_negligible
from stverify.stbp_hybrid.certify import certify
from stverify.threats import parse_threat
model, threat = {model!r}, parse_threat({threat!r})
if model.endswith(".onnx"):
    net = sv.load_network(model)
    x = np.random.default_rng(1).uniform(size=net.input_shape)
    y = int(net.predict(x))
else:
    from stverify import zoo
    from stverify.data import ensure_dataset, load_sample
    net = zoo.pretrained_network(model)
    x, y = load_sample(ensure_dataset(zoo.ARCHITECTURES[model].dataset), "test", 0)
    y = int(y)
enc = encode(net, x, threat, certify(net, x, y, threat).bounds)
relaxed = relax_negligible(enc.model).model
times = []
for _ in range(3):
    t = time.perf_counter()
    built = scip.build(relaxed)
    times.append(time.perf_counter() - t)
    del built  # (freeing the model is not building it)
t = time.perf_counter()
r = sv.verify(net, x, y, threat, method="milp", attack=False, timeout=120)
print(json.dumps({{"build_s": statistics.median(times), "n_vars": relaxed.n_vars, "n_rows": relaxed.n_rows,
                   "milp_s": time.perf_counter() - t, "milp_build_s": r.stats.get("build_s"), "status": r.status}}))
"""


def run(src: Path, model: str, threat: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", CHILD.format(model=model, threat=threat)], env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True)
    ap.add_argument("--vvn", type=Path, help="folder with the VVN ONNX models (gtsrb_4f.onnx)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    cases = [("medmnist", "linf:eps=8/255"), ("medmnist", "anyframes:k=1,eps=8/255")]
    if args.vvn is not None and (args.vvn / "gtsrb_4f.onnx").exists():
        cases.insert(0, (str(args.vvn / "gtsrb_4f.onnx"), "linf:eps=1/255"))
    else:
        print("no --vvn folder with gtsrb_4f.onnx: the VVN case is skipped", file=sys.stderr)
    srcs = {"old": args.old.resolve(), "new": NEW_SRC}
    rows = []
    for rep in range(args.reps):
        for model, threat in cases:
            for version in (("old", "new") if rep % 2 == 0 else ("new", "old")):
                rows.append({"model": Path(model).name, "threat": threat, "version": version, **run(srcs[version], model, threat)})
                print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "milp_build.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    med = lambda m, t, v, k: statistics.median(r[k] for r in rows if (r["model"], r["threat"], r["version"]) == (m, t, v))  # noqa: E731
    lines = ["| model | threat | variables | rows | old build s | new build s | speed-up | old milp s (build s in it) | "
             "new milp s (build s in it) |", "|---|---|---|---|---|---|---|---|---|"]
    for model, threat in dict.fromkeys((r["model"], r["threat"]) for r in rows):
        ob, nb = med(model, threat, "old", "build_s"), med(model, threat, "new", "build_s")
        first = next(r for r in rows if (r["model"], r["threat"]) == (model, threat))
        lines.append(f"| {model} | `{threat}` | {first['n_vars']} | {first['n_rows']} | {ob:.3f} | {nb:.3f} | {ob / nb:.1f}x | "
                     f"{med(model, threat, 'old', 'milp_s'):.2f} ({med(model, threat, 'old', 'milp_build_s'):.2f}) | "
                     f"{med(model, threat, 'new', 'milp_s'):.2f} ({med(model, threat, 'new', 'milp_build_s'):.2f}) |")
    text = (f"# Building the SCIP model, old ({args.old}) vs new\n\n{platform.node()}, {os.cpu_count()} cores (shared); one "
            f"thread; {args.reps} repetitions, old and new alternating; medians.\n\n" + "\n".join(lines) + "\n")
    (args.out / "milp_build.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
