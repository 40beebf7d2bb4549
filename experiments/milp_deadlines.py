"""Timeouts held end to end (issue 18): wall time of verify() against its timeout, old and new.

Models: ``fc-11m`` (built here: Conv3d 3->32 k3 s2 p1 on 3 x 8 x 32 x 32, ReLU, Linear 32768 -> 320,
ReLU, Linear 320 -> 10; 10.5M parameters, He-initialised, seed 0; its MILP has 10M terms in one
dense layer) and VVN zoomout 16f (``--vvn DIR``, the ONNX of github.com/sammsaski/VVN, never
committed; skipped without it).  Inputs: uniform in [0, 1] (seed 1) moved towards a counterexample
of ``linf:eps=16/255`` until the margin is 5 % of the clean one (bisection), so that the instance
(``linf:eps=1/255``) is hard; label: the clean prediction.  Each run: a fresh process (one torch
thread), ``verify(method, timeout=T)`` for every method x T in --timeouts x attack on / off (milp),
old (--old) and new alternating; recorded: the wall time of the call and its status.  Held: wall
<= max(1.1 T, T + 2 s).  Results: results/milp_deadlines/milp_deadlines.jsonl and .md.

    .venv/bin/python experiments/milp_deadlines.py --old /tmp/old011/src --vvn /tmp/vvn
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEW_SRC = HERE.parent / "src"
RESULTS = HERE / "results" / "milp_deadlines"
RUNS = [("milp", {"solver": "scip"}, True), ("milp", {"solver": "scip"}, False), ("milp", {"solver": "highs"}, False),
        ("bab", {}, True), ("smt", {}, True), ("stbp", {}, True)]

CHILD = """
import json, time
import numpy as np, torch
torch.set_num_threads(1)
import stverify as sv
from stverify.complete.attack import attack
from stverify.network import Conv3d, Flatten, Linear, Network, ReLU

def fc_11m():
    rng = np.random.default_rng(0)
    fan = 3 * 27
    conv = Conv3d(rng.normal(size=(32, 3, 3, 3, 3)) * np.sqrt(2 / fan), rng.uniform(-1, 1, 32) / np.sqrt(fan), (2, 2, 2),
                  (1, 1, 1))
    lin = lambda i, o: Linear(rng.normal(size=(o, i)) * np.sqrt(2 / i), rng.uniform(-1, 1, o) / np.sqrt(i))
    return Network([conv, ReLU(), Flatten(), lin(32768, 320), ReLU(), lin(320, 10)], (3, 8, 32, 32), name="fc-11m")

def margin(net, x, y):
    z = net.forward(x)
    return z[y] - np.max(np.delete(z, y))

model = {model!r}
net = fc_11m() if model == "fc-11m" else sv.load_network(model)
x0 = np.random.default_rng(1).uniform(size=net.input_shape)
y = int(net.predict(x0))
c = attack(net, x0, y, sv.parse_threat("linf:eps=16/255"), time_limit=30)
x = x0
if c is not None:
    lo, hi, target = 0.0, 1.0, 0.05 * margin(net, x0, y)
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if margin(net, x0 + mid * (c - x0), y) > target else (lo, mid)
    x = x0 + lo * (c - x0)
start = time.perf_counter()
r = sv.verify(net, x, y, "linf:eps=1/255", method={method!r}, timeout={timeout}, attack={attack}, **{options!r})
print(json.dumps({{"wall_s": time.perf_counter() - start, "status": r.status, "message": r.message[:200]}}))
"""


def run(src: Path, model: str, method: str, options: dict, attack: bool, timeout: float) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(src)}
    code = CHILD.format(model=model, method=method, options=options, attack=attack, timeout=timeout)
    try:
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=3 * timeout + 120)
    except subprocess.TimeoutExpired:
        return {"wall_s": None, "status": "killed", "message": f"no answer after {3 * timeout + 120:g} s"}
    if p.returncode != 0:
        return {"wall_s": None, "status": "crashed", "message": p.stderr.strip().splitlines()[-1][:200]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def held(wall, timeout) -> bool:
    return wall is not None and wall <= max(1.1 * timeout, timeout + 2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True)
    ap.add_argument("--vvn", type=Path, help="folder with the VVN ONNX models (zoomout_16f.onnx)")
    ap.add_argument("--timeouts", type=float, nargs="+", default=[10.0, 30.0])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    models = ["fc-11m"]
    if args.vvn is not None and (args.vvn / "zoomout_16f.onnx").exists():
        models.append(str(args.vvn / "zoomout_16f.onnx"))
    else:
        print("no --vvn folder with zoomout_16f.onnx: the VVN model is skipped", file=sys.stderr)
    srcs = {"old": args.old.resolve(), "new": NEW_SRC}
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with (args.out / "milp_deadlines.jsonl").open("w") as f:
        for k, (model, timeout, (method, options, attack)) in enumerate(
                (m, t, r) for m in models for t in args.timeouts for r in RUNS):
            for version in (("old", "new") if k % 2 == 0 else ("new", "old")):
                row = {"model": Path(model).stem, "timeout": timeout, "method": method, "options": options, "attack": attack,
                       "version": version, **run(srcs[version], model, method, options, attack, timeout)}
                rows.append(row)
                f.write(json.dumps(row) + "\n")
                f.flush()
                print(row, flush=True)
    lines = ["| model | T s | method | attack | old wall s | old status | new wall s | new status | held (new) |",
             "|---|---|---|---|---|---|---|---|---|"]
    by = {(r["model"], r["timeout"], r["method"], json.dumps(r["options"]), r["attack"], r["version"]): r for r in rows}
    for (model, timeout, method, options, attack, version), r in by.items():
        if version != "new":
            continue
        o = by[(model, timeout, method, options, attack, "old")]
        fmt = lambda w: "-" if w is None else f"{w:.1f}"  # noqa: E731
        name = method + ("" if options == "{}" else f" {json.loads(options).get('solver', '')}")
        lines.append(f"| {model} | {timeout:g} | {name} | {'on' if attack else 'off'} | {fmt(o['wall_s'])} | {o['status']} | "
                     f"{fmt(r['wall_s'])} | {r['status']} | {'yes' if held(r['wall_s'], timeout) else 'NO'} |")
    text = (f"# Timeouts end to end, old ({args.old}) vs new\n\n{platform.node()}, {os.cpu_count()} cores (shared); one "
            f"thread; held means wall <= max(1.1 T, T + 2 s).\n\n" + "\n".join(lines) + "\n")
    (args.out / "milp_deadlines.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
