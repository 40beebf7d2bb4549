"""milp against bab on the zoo (issue 18): does ``milp`` decide every instance ``bab`` decides in
under 10 s?

Instances: per zoo model (tiny, tiny_std, tiny_maxpool, small, medmnist) the first --n correctly
classified test samples x every threat kind (``bench.config.default_threat``: the whole input,
the middle frame, any one frame, a centred patch, any patch) x eps in --eps.  Each instance:
``bab`` (timeout --bab-timeout) and ``milp`` (SCIP, timeout --milp-timeout), one torch thread,
in this process.  One JSON line per run in --out (resumable: a rerun skips what is there); the
summary (per model and threat kind: instances bab decides under 10 s, milp decides, their times;
and every instance bab decides and milp does not) is printed and written to --md.

    .venv/bin/python experiments/milp_vs_bab.py                # ~1 h on 2 cores
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

import stverify as sv
from stverify import data, zoo
from stverify.bench.config import default_threat

RESULTS = Path(__file__).resolve().parent / "results" / "milp_vs_bab"
MODELS = ("tiny", "tiny_std", "tiny_maxpool", "small", "medmnist")
KINDS = ("linf", "frames", "anyframes", "patch", "anypatch")
DECIDED = ("verified", "falsified")
BAB_FAST_S = 10.0


def samples(model: str, n: int):
    net = zoo.pretrained_network(model)
    X, Y = data.load_npz(data.ensure_dataset(zoo.ARCHITECTURES[model].dataset), "test")
    return net, [(i, X[i], int(Y[i])) for i in range(len(X)) if int(net.predict(X[i])) == int(Y[i])][:n]


def run(net, x, y, threat, method, timeout) -> dict:
    start = time.perf_counter()
    r = sv.verify(net, x, y, threat, method=method, timeout=timeout)
    s = r.stats
    return {"status": r.status, "time_s": time.perf_counter() - start, "margin_lb": r.margin_lb,
            "found_by": s.get("found_by"), "binaries": s.get("binaries"), "nodes": s.get("nodes"),
            "members": s.get("members"), "message": r.message[:300]}


def summary(rows: list[dict]) -> str:
    by = defaultdict(dict)
    for r in rows:
        by[(r["model"], r["kind"], r["index"], r["eps"])][r["method"]] = r
    groups = defaultdict(list)
    for (model, kind, *_), pair in by.items():
        if len(pair) == 2:
            groups[(model, kind)].append(pair)
    lines = ["| model | kind | instances | bab decides < 10 s | milp decides them | bab median s | milp median s |",
             "|---|---|---|---|---|---|---|"]
    missed = []
    for (model, kind), pairs in groups.items():
        fast = [p for p in pairs if p["bab"]["status"] in DECIDED and p["bab"]["time_s"] < BAB_FAST_S]
        ok = [p for p in fast if p["milp"]["status"] in DECIDED]
        missed += [p for p in fast if p["milp"]["status"] not in DECIDED]
        med = lambda ps, m: f"{statistics.median(p[m]['time_s'] for p in ps):.3f}" if ps else "-"  # noqa: E731
        lines.append(f"| {model} | {kind} | {len(pairs)} | {len(fast)} | {len(ok)} | {med(fast, 'bab')} | {med(fast, 'milp')} |")
    lines += ["", f"instances bab decides in under {BAB_FAST_S:g} s that milp does not decide: {len(missed)}"]
    for p in missed:
        b, m = p["bab"], p["milp"]
        lines.append(f"* {b['model']} #{b['index']} `{b['threat']}`: bab {b['status']} in {b['time_s']:.2f} s; "
                     f"milp {m['status']} after {m['time_s']:.1f} s ({m['message'][:160]})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--eps", nargs="+", default=["8/255", "32/255"])
    ap.add_argument("--bab-timeout", type=float, default=20.0)
    ap.add_argument("--milp-timeout", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "milp_vs_bab.jsonl")
    ap.add_argument("--md", type=Path, default=RESULTS / "milp_vs_bab.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    keys = {(r["model"], r["index"], r["threat"], r["method"]) for r in done}
    with args.out.open("a") as f:
        for model in args.models:
            net, picked = samples(model, args.n)
            for i, x, y in picked:
                for kind in KINDS:
                    for eps in args.eps:
                        threat = default_threat(kind, eps, net.input_shape)
                        for method, timeout in (("bab", args.bab_timeout), ("milp", args.milp_timeout)):
                            if (model, i, threat, method) in keys:
                                continue
                            row = {"model": model, "index": i, "kind": kind, "eps": eps, "threat": threat,
                                   "method": method, "timeout": timeout, **run(net, x, y, threat, method, timeout)}
                            done.append(row)
                            f.write(json.dumps(row, default=float) + "\n")
                            f.flush()
                            print(f"{model} #{i} {threat} {method}: {row['status']} {row['time_s']:.2f} s", flush=True)
    text = (f"# milp vs bab on the zoo\n\n{platform.node()}, {platform.processor() or platform.machine()}; one torch thread; "
            f"bab timeout {args.bab_timeout:g} s, milp (SCIP) timeout {args.milp_timeout:g} s; "
            f"the first {args.n} correctly classified test samples; eps {', '.join(args.eps)}.\n\n{summary(done)}\n")
    args.md.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
