"""MILP benchmark (issue 4): verdict, time, binaries and nodes with big-M from ``naive``, ``stbp``
and ``lp`` bounds, each with SCIP and HiGHS, side by side, on the zoo models.

    .venv/bin/python experiments/milp_bench.py                          # tiny + small, 5 samples
    .venv/bin/python experiments/milp_bench.py --models medmnist --n 1

Instances: the first N correctly classified test samples x every threat kind (linf; frames 0; any
1 frame; a 3x3 patch in frames 0-1 at the centre; a 3x3 patch over any 2 consecutive frames) x
eps in {1, 2, 4, 8, 16}/255.  The MILP runs without the attack that ``verify`` otherwise runs
first (``attack=False``), so the MILP itself has to find every counterexample.  Resumable: one
JSON line per run in --out (flushed and fsynced); a rerun skips the keys already there.  The
markdown summary is printed and written to --md.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import stverify as sv
from stverify import data, zoo

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = {"linf": "linf:eps={e}/255", "frames": "frames:eps={e}/255,frames=0", "anyframes": "anyframes:k=1,eps={e}/255",
         "patch": "patch:eps={e}/255,t=0-1,y={c},x={c},h=3,w=3", "anypatch": "anypatch:eps={e}/255,len=2,h=3,w=3"}
DECIDED = ("verified", "falsified")


def samples(model: str, n: int):
    """The network and the first n correctly classified test samples (index, x, y)."""
    net = zoo.pretrained_network(model)
    X, Y = data.load_npz(data.ensure_dataset(zoo.ARCHITECTURES[model].dataset), "test")
    picked = [(i, X[i], int(Y[i])) for i in range(len(X)) if int(net.predict(X[i])) == int(Y[i])][:n]
    return net, picked


def run_one(net, x, y, threat, bounds, solver, timeout) -> dict:
    try:
        r = sv.verify(net, x, y, threat, method="milp", solver=solver, bounds=bounds, timeout=timeout, attack=False)
    except Exception as e:  # recorded, not fatal: the benchmark goes on
        return {"status": "error", "time_s": None, "message": f"{type(e).__name__}: {e}"}
    s = r.stats
    lp = s.get("lp", {})
    keep = ("binaries", "n_binaries", "unstable_relus", "nodes", "n_vars", "n_constraints", "big_m", "bounds_s",
            "build_s", "solve_s")
    return {"status": r.status, "time_s": r.time_s, "margin_lb": r.margin_lb, **{k: s.get(k) for k in keep},
            "milp_competitors": len(s.get("competitors", {})),
            "lp": {k: lp[k] for k in ("lps", "stabilised", "tightened", "time_s") if k in lp},
            "message": r.message[:300]}


def write_line(f, row: dict) -> None:
    f.write(json.dumps(row, default=float) + "\n")
    f.flush()
    os.fsync(f.fileno())


def run(args) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["key"] for line in out.read_text().splitlines() if line.strip()} if out.exists() else set()
    start = time.perf_counter()
    argv = " ".join(sys.argv[1:])
    with out.open("a") as f:
        for model in args.models:
            net, picked = samples(model, args.n)
            centre = net.input_shape[2] // 2 - 1
            for (index, x, y), kind, e, bounds, solver in itertools.product(picked, args.kinds, args.eps, args.bounds,
                                                                            args.solvers):
                threat = KINDS[kind].format(e=e, c=centre)
                key = f"{model}|{index}|{threat}|{bounds}|{solver}"
                if key in done:
                    continue
                if time.perf_counter() - start > 60 * args.budget_min:
                    print(f"budget of {args.budget_min} min used up; rerun to continue", file=sys.stderr)
                    return
                row = {"key": key, "model": model, "index": index, "label": y, "kind": kind, "eps255": e,
                       "threat": threat, "bounds": bounds, "solver": solver, "timeout": args.timeout, "argv": argv,
                       **run_one(net, x, y, threat, bounds, solver, args.timeout)}
                write_line(f, row)
                print(f"{key}: {row['status']} {row['time_s'] or 0:.2f}s binaries={row.get('binaries')} "
                      f"nodes={row.get('nodes')}", file=sys.stderr, flush=True)


def _median(v):
    return statistics.median(v) if v else float("nan")


def summarise(rows: list[dict]) -> str:
    """The markdown summary of every run in ``rows``."""
    by = defaultdict(list)
    for r in rows:
        by[(r["model"], r["bounds"], r["solver"])].append(r)
    models, kinds, eps, bounds_all, solvers = (list(dict.fromkeys(r[k] for r in rows))
                                               for k in ("model", "kind", "eps255", "bounds", "solver"))
    recipes = zoo.manifest()
    commands = "; ".join(f"`.venv/bin/python experiments/milp_bench.py {a}`"
                         for a in dict.fromkeys(r["argv"] for r in rows))
    timeouts = "/".join(f"{t:g}" for t in sorted({r["timeout"] for r in rows}))
    trained = ", ".join(f"{m} ({recipes[m]['method']}, eps {recipes[m]['eps_text']})" if m in recipes else m
                        for m in models)
    lines = ["# MILP benchmark: big-M from naive, stbp and lp bounds, SCIP and HiGHS", "",
             f"Produced by: {commands}  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), Python "
             f"{platform.python_version()}; per-instance timeout {timeouts} s, solver threads 1; attack off.  ",
             "Instances: first N correctly classified test samples x 5 threat kinds x eps in {1,2,4,8,16}/255.  ",
             f"Models (training of the shipped weights): {trained}.", "",
             "## Verdicts and cost", "",
             "| model | bounds | solver | runs | verified | falsified | unknown | timeout | error | MILP needed "
             "| median time (s) | max time (s) | mean binaries | total nodes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (model, bounds, solver), rs in by.items():
        c = Counter(r["status"] for r in rs)
        times = [r["time_s"] for r in rs if r["time_s"] is not None]
        bins = [r["binaries"] for r in rs if r.get("binaries") is not None]
        counts = " | ".join(str(c[k]) for k in ("verified", "falsified", "unknown", "timeout", "error"))
        lines.append(f"| {model} | {bounds} | {solver} | {len(rs)} | {counts} "
                     f"| {sum(1 for r in rs if r.get('milp_competitors'))} "
                     f"| {_median(times):.2f} | {max(times, default=float('nan')):.2f} "
                     f"| {statistics.mean(bins) if bins else float('nan'):.1f} "
                     f"| {sum(r.get('nodes') or 0 for r in rs)} |")
    lines += ["", "## naive vs stbp big-M (same instance and solver)", "",
              "Ratios are naive / stbp per instance.  'MILP needed': instances where the naive certificate left "
              "some class to the MILP.  Network binaries: ReLU + max-pool binaries (the threat's binaries are the "
              "same for every source).  big-M: mean of -l and u over the unstable ReLUs.", "",
              "| model | solver | pairs | median time ratio | median time ratio, MILP needed (n) "
              "| total network binaries naive / stbp | median big-M ratio (n) |", "|---|---|---|---|---|---|---|"]
    idx = {(r["model"], r["index"], r["threat"], r["bounds"], r["solver"]): r for r in rows}
    net_bin = lambda r: sum((r.get("n_binaries") or {}).get(k, 0) for k in ("relu", "maxpool"))  # noqa: E731
    big_m = lambda r: (lambda m: (m["mean_neg_l"] + m["mean_u"]) / 2 if m else 0.0)(r.get("big_m"))  # noqa: E731
    for model in models:
        for solver in solvers:
            pairs = [(r, idx.get((model, r["index"], r["threat"], "stbp", solver))) for r in rows
                     if r["model"] == model and r["bounds"] == "naive" and r["solver"] == solver]
            pairs = [(a, b) for a, b in pairs if b is not None and a["time_s"] and b["time_s"]]
            if not pairs:
                continue
            t = [a["time_s"] / b["time_s"] for a, b in pairs]
            tm = [a["time_s"] / b["time_s"] for a, b in pairs if a.get("milp_competitors")]
            sa, sb = (sum(net_bin(p[k]) for p in pairs) for k in (0, 1))
            bm = [big_m(a) / big_m(b) for a, b in pairs if big_m(a) > 0 and big_m(b) > 0]
            lines.append(f"| {model} | {solver} | {len(pairs)} | {_median(t):.2f} | {_median(tm):.2f} ({len(tm)}) "
                         f"| {sa} / {sb} = {sa / max(sb, 1):.2f} | {_median(bm):.2f} ({len(bm)}) |")
    lines += ["", "## Verdict per threat kind and eps (stbp big-M, SCIP): v verified, f falsified, ? other", "",
              "| model | kind | " + " | ".join(f"{e}/255" for e in eps) + " |",
              "|---|---|" + "---|" * len(eps)]
    for model in models:
        for kind in kinds:
            cells = []
            for e in eps:
                c = Counter(r["status"] for r in rows if (r["model"], r["kind"], r["eps255"], r["bounds"], r["solver"])
                            == (model, kind, e, "stbp", "scip"))
                cells.append(" ".join(f"{n}{s[0] if s in DECIDED else '?'}" for s, n in sorted(c.items())) or "-")
            lines.append(f"| {model} | {kind} | " + " | ".join(cells) + " |")
    verdicts = defaultdict(set)
    for r in rows:
        verdicts[(r["model"], r["index"], r["threat"])].add(r["status"])
    conflicts = [k for k, v in verdicts.items() if {"verified", "falsified"} <= v]
    undecided = [k for k, v in verdicts.items() if not v <= set(DECIDED)]
    lines += ["", "## Checks", "",
              f"* Instances: {len(verdicts)}; verified/falsified conflicts across bounds and solvers: {len(conflicts)}"
              + (f" ({conflicts[:5]})" if conflicts else "")
              + f"; instances not decided by every run: {len(undecided)}."]
    for model in models:
        for bounds in bounds_all:
            rs = by.get((model, bounds, "scip"), [])
            if rs:
                ok = sum(1 for r in rs if r["status"] in DECIDED and r["time_s"] <= 60)
                lines.append(f"* {model}, {bounds}, SCIP: {ok} / {len(rs)} decided within 60 s"
                             f" ({'all' if ok == len(rs) else 'not all'}).")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["tiny", "small"])
    p.add_argument("--n", type=int, default=5, help="correctly classified test samples per model")
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    p.add_argument("--eps", nargs="+", type=int, default=[1, 2, 4, 8, 16], help="eps in units of 1/255")
    p.add_argument("--bounds", nargs="+", default=["naive", "stbp", "lp"])
    p.add_argument("--solvers", nargs="+", default=["scip", "highs"])
    p.add_argument("--timeout", type=float, default=60.0, help="per instance, seconds")
    p.add_argument("--budget-min", type=float, default=float("inf"), help="stop starting new runs after this")
    p.add_argument("--out", default=str(RESULTS / "milp_bench.jsonl"))
    p.add_argument("--md", default=str(RESULTS / "milp_bench.md"))
    p.add_argument("--summary-only", action="store_true", help="only rewrite the summary from --out")
    args = p.parse_args(argv)
    if not args.summary_only:
        run(args)
    rows = [json.loads(line) for line in Path(args.out).read_text().splitlines() if line.strip()]
    md = summarise(rows)
    Path(args.md).write_text(md)
    print(md)


if __name__ == "__main__":
    main()
