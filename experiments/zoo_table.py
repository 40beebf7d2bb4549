"""The model zoo table: clean accuracy (MAE), IBP- and STBP-certified accuracy of every zoo model.

For every zoo model with shipped weights, on the first N (100) test inputs of its dataset (the
manifest's ``check_first_n`` inputs):
  clean        accuracy (classifiers) or mean absolute error (the steering regression)
  ibp-linf     box-ibp verified under linf at the model's training eps
  stbp-linf    stbp (CROWN) verified under the same threat
  ibp-anyf     box-ibp verified under anyframes:k=1 at ANY_SCALE x the training eps
  stbp-anyf    stbp (CROWN) verified under the same threat
A classifier's property is its label (a misclassified input counts as not certified: verify()
answers ``falsified`` on it); the steering model's is the band ``deviation:delta=STEERING_DELTA``
around its clean output.  The untrained ``r3d18_small`` gets a row with its size and ReLUs only.

    python experiments/zoo_table.py                  # -> experiments/results/zoo_table/zoo_table.{md,jsonl}
    python experiments/zoo_table.py --models tiny --n 10
    python experiments/zoo_table.py --render          # the markdown again from the .jsonl, nothing run
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import stverify as sv
from stverify import zoo
from stverify.data import ensure_dataset, load_npz
from stverify.threats import format_eps

ANY_SCALE = 4  # the anyframes eps, as a multiple of the training eps
STEERING_DELTA = 0.1
MEASURES = {  # column -> (method, threat kind)
    "ibp-linf": ("box-ibp", "linf"),
    "stbp-linf": ("stbp", "linf"),
    "ibp-anyf": ("box-ibp", "anyframes"),
    "stbp-anyf": ("stbp", "anyframes"),
}
OUT = Path(__file__).resolve().parent / "results" / "zoo_table"


def threat(kind: str, eps: float) -> str:
    return f"linf:eps={format_eps(eps)}" if kind == "linf" else f"anyframes:k=1,eps={format_eps(ANY_SCALE * eps)}"


def training(info: dict) -> str:
    return f"IBP, {info['eps_text']}" if info["method"] == "ibp" else info["method"]


def model_rows(name: str, n: int) -> list[dict]:
    """One record per measure of model ``name`` on its first ``n`` test inputs."""
    spec, info = zoo.ARCHITECTURES[name], zoo.manifest()[name]
    net = zoo.network(name)
    X, Y = load_npz(ensure_dataset(spec.dataset), "test")
    X, Y = X[:n], Y[:n]
    regression = Y.dtype.kind == "f"  # regression targets (the steering angle)
    prop = [f"deviation:delta={STEERING_DELTA}"] * n if regression else [int(v) for v in Y]
    base = {"model": name, "dataset": spec.dataset, "n": n, "relus": net.n_relus,
            "training": training(info)}
    outputs = np.stack([net.forward(x) for x in X])
    clean = (float(np.abs(outputs[:, 0] - Y).mean()) if regression else
             float((outputs.argmax(axis=1) == Y).mean()))
    rows = [{**base, "measure": "mae" if regression else "clean_acc", "value": clean}]
    for measure, (method, kind) in MEASURES.items():
        th = threat(kind, info["eps"])
        results = [sv.verify(net, x, p, th, method=method) for x, p in zip(X, prop)]
        rows.append({**base, "measure": measure, "method": method, "threat": th,
                     "property": prop[0] if regression else "label",
                     "certified": sum(r.status == "verified" for r in results),
                     "statuses": {s: sum(r.status == s for r in results) for s in {r.status for r in results}},
                     "median_s": statistics.median(r.time_s for r in results),
                     "total_s": sum(r.time_s for r in results)})
    return rows


def untrained_row(name: str) -> dict:
    net = zoo.network(name)
    return {"model": name, "dataset": None, "relus": net.n_relus, "params": net.n_params,
            "input_shape": list(zoo.ARCHITECTURES[name].input_shape), "training": "untrained (He init)",
            "measure": "size"}


def cell(rows: list[dict], measure: str) -> str:
    r = next(r for r in rows if r["measure"] == measure)
    return f"{r['certified'] / r['n']:.0%} ({r['threat'].split(':')[1].split('eps=')[1]})"


def markdown(rows: list[dict], n: int) -> str:
    head = ("| model | input | dataset | ReLUs | training | clean acc. / MAE | IBP-certified linf | STBP-certified linf "
            "| IBP-certified anyframes | STBP-certified anyframes |\n" + "| --- " * 10 + "|\n")
    lines = []
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        first = mine[0]
        shape = "x".join(map(str, zoo.ARCHITECTURES[name].input_shape))
        if first["measure"] == "size":
            lines.append(f"| `{name}` | {shape} | - | {first['relus']} | {first['training']} | - | - | - | - | - |")
            continue
        clean = f"MAE {first['value']:.3f}" if first["measure"] == "mae" else f"{first['value']:.0%}"
        lines.append(f"| `{name}` | {shape} | `{first['dataset']}` | {first['relus']} | {first['training']} | {clean} | "
                     + " | ".join(cell(mine, m) for m in MEASURES) + " |")
    return (f"# Model zoo: certified accuracy on the first {n} test inputs\n\n"
            f"Threats: `linf` at the training eps; `anyframes:k=1` (any one frame) at {ANY_SCALE}x the training eps "
            f"(eps in brackets). IBP = box-ibp, STBP = stbp (CROWN). Classifiers: correctly classified and verified; "
            f"`steering`: the band `deviation:delta={STEERING_DELTA}` proven. box-ibp bounds the margins "
            f"logit_y - logit_j with the last Linear folded in, so it certifies at least what the manifest's check (logit "
            f"intervals compared, `check_first_n`) does, sometimes more. Written by `experiments/zoo_table.py` "
            f"({platform.processor() or platform.machine()}, torch threads 1).\n\n" + head + "\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[m for m in zoo.available()])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--render", action="store_true", help="rewrite the markdown from the .jsonl only")
    args = parser.parse_args(argv)
    if args.render:
        rows = [json.loads(line) for line in (args.out / "zoo_table.jsonl").read_text().splitlines()]
        (args.out / "zoo_table.md").write_text(markdown(rows, next(r["n"] for r in rows if "n" in r)))
        return 0
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with (args.out / "zoo_table.jsonl").open("w") as f:
        for name in args.models:
            start = time.perf_counter()
            new = model_rows(name, args.n) if zoo.ARCHITECTURES[name].trained else [untrained_row(name)]
            for r in new:
                f.write(json.dumps(r) + "\n")
            f.flush()
            rows += new
            print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    (args.out / "zoo_table.md").write_text(markdown(rows, args.n))
    print((args.out / "zoo_table.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
