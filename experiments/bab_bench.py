"""Branch-and-bound vs MILP (issue 6): time per instance, instances STBP leaves unknown apart.

Methods, each with the same timeout (60 s) and without the attack ``verify`` otherwise runs first
(``attack=False``), so every complete method has to find its counterexamples itself:
  bab          branch-and-bound with STBP bounds (``complete/bab.py``, its own node attacks included)
  milp-stbp    MILP with big-M from STBP bounds
  milp-naive   MILP with big-M from IBP over the bounding box
  stbp         STBP (CROWN) alone, which defines the "STBP-unknown" instances
Instances: the first N correctly classified test samples of each model x the threats of
``THREATS`` (eps chosen so that STBP leaves many unknown).  Instances are run index-major, so a
run cut short by ``--budget-min`` still covers every model; a rerun resumes (one JSON line per
run in --out, flushed).  Outputs: the markdown summary (--md), the cactus data (--cactus, CSV of
the sorted solve times per method) and its plot (PNG).

    .venv/bin/python experiments/bab_bench.py                      # the default grid, ~25 min
    .venv/bin/python experiments/bab_bench.py --summary-only       # rewrite the summary from --out
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import stverify as sv
from stverify import data, zoo

RESULTS = Path(__file__).resolve().parent / "results"
THREATS = {
    "tiny_std": ["anyframes:k=1,eps=32/255", "anypatch:eps=32/255,len=2,h=3,w=3", "linf:eps=8/255"],
    "small": ["anyframes:k=1,eps=32/255", "anypatch:eps=32/255,len=2,h=3,w=3", "linf:eps=16/255"],
    "medmnist": ["anyframes:k=1,eps=32/255", "anypatch:eps=16/255,len=4,h=4,w=4", "linf:eps=8/255"],
}
METHODS = {"stbp": ("stbp", {}), "bab": ("bab", {}), "milp-stbp": ("milp", {"bounds": "stbp"}),
           "milp-naive": ("milp", {"bounds": "naive"})}
COMPLETE = ("bab", "milp-stbp", "milp-naive")
DECIDED = ("verified", "falsified")
BAB_STATS = ("nodes", "pruned", "max_depth", "threat_splits", "relu_splits", "milp_leaves", "attacks", "bound_s",
             "milp_s", "attack_s")


def samples(model: str, n: int):
    net = zoo.pretrained_network(model)
    X, Y = data.load_npz(data.ensure_dataset(zoo.ARCHITECTURES[model].dataset), "test")
    return net, [(i, X[i], int(Y[i])) for i in range(len(X)) if int(net.predict(X[i])) == int(Y[i])][:n]


def run_one(net, x, y, threat: str, method: str, timeout: float) -> dict:
    name, opts = METHODS[method]
    try:
        r = sv.verify(net, x, y, threat, method=name, timeout=timeout, attack=False, **opts)
    except Exception as e:  # recorded, not fatal
        return {"status": "error", "time_s": None, "message": f"{type(e).__name__}: {e}"}
    keep = BAB_STATS if method == "bab" else ("binaries", "nodes", "unstable_relus")
    return {"status": r.status, "time_s": r.time_s, "margin_lb": r.margin_lb, "message": r.message[:200],
            **{k: r.stats.get(k) for k in keep}}


def run(args) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {(r["model"], r["threat"], r["index"], r["method"]) for r in map(json.loads, out.read_text().splitlines())}
    torch.set_num_threads(args.threads)
    models = {m: samples(m, args.n[k] if k < len(args.n) else args.n[-1]) for k, m in enumerate(args.models)}
    stop = time.perf_counter() + 60 * args.budget_min
    with out.open("a") as f:
        for rank in range(max(len(s) for _, s in models.values())):
            for model, (net, picked) in models.items():
                if rank >= len(picked):
                    continue
                i, x, y = picked[rank]
                for threat in THREATS[model]:
                    for method in METHODS:
                        if (model, threat, i, method) in done:
                            continue
                        if time.perf_counter() > stop:
                            print("budget reached; rerun to resume", flush=True)
                            return
                        row = {"model": model, "threat": threat, "kind": threat.split(":")[0], "index": i, "method": method,
                               "timeout": args.timeout, **run_one(net, x, y, threat, method, args.timeout)}
                        f.write(json.dumps(row, default=float) + "\n")
                        f.flush()
                        os.fsync(f.fileno())
                        print(f"{model} #{i} {threat} {method}: {row['status']} {row['time_s'] or 0:.2f}s", flush=True)


# --- summary ---------------------------------------------------------------------------------
def load(path: Path) -> dict:
    """{(model, threat, index): {method: row}}, complete instances only (every method ran)."""
    inst: dict = {}
    for r in map(json.loads, path.read_text().splitlines()):
        inst.setdefault((r["model"], r["threat"], r["index"]), {})[r["method"]] = r
    return {k: v for k, v in inst.items() if set(v) == set(METHODS)}


def solved_time(r: dict) -> float | None:
    return r["time_s"] if r["status"] in DECIDED else None


def charged(r: dict) -> float:
    """Solve time, or the timeout for an undecided run (so a speed-up with it is a lower bound)."""
    t = solved_time(r)
    return t if t is not None else max(r["timeout"], r["time_s"] or 0.0)


def fmt_med(rows: list[dict]) -> str:
    """Median charged time, with the number of undecided runs in it."""
    undecided = sum(solved_time(r) is None for r in rows)
    return f"{statistics.median(charged(r) for r in rows):.2f}" + (f" ({undecided} undecided)" if undecided else "")


def speedups(group: dict) -> list[float]:
    return [charged(v["milp-stbp"]) / charged(v["bab"]) for v in group.values()]


def table(groups: dict, title: str) -> list[str]:
    head = " | ".join(f"{m} solved | {m} median s" for m in COMPLETE)
    lines = [f"## {title}", "", f"| model | threat | n | STBP unknown | verdicts | {head} | median speed-up bab vs milp-stbp |",
             "|" + "---|" * (5 + 2 * len(COMPLETE) + 1)]
    for (model, threat), g in groups.items():
        unknown = sum(v["stbp"]["status"] != "verified" for v in g.values())
        cells = [f"{sum(solved_time(v[m]) is not None for v in g.values())}/{len(g)} | {fmt_med([v[m] for v in g.values()])}"
                 for m in COMPLETE]
        verdicts = " ".join(f"{sum(v['bab']['status'] == s for v in g.values())}{s[0]}" for s in DECIDED)
        lines.append(f"| {model} | `{threat}` | {len(g)} | {unknown} | {verdicts} | " + " | ".join(cells) +
                     f" | {statistics.median(speedups(g)):.1f}x |")
    return lines


def summarize(args) -> str:
    inst = load(Path(args.out))
    groups, unknown_groups = {}, {}
    for (model, threat, i), v in sorted(inst.items(), key=lambda kv: (list(THREATS).index(kv[0][0]), kv[0][1], kv[0][2])):
        groups.setdefault((model, threat), {})[i] = v
        if v["stbp"]["status"] != "verified":
            unknown_groups.setdefault((model, threat), {})[i] = v
    unknown = {k: v for k, v in inst.items() if v["stbp"]["status"] != "verified"}
    sp = speedups(unknown)
    verdict_ok = all(len({v[m]["status"] for m in COMPLETE if v[m]["status"] in DECIDED}) <= 1 for v in inst.values())
    lines = [
        "# Branch-and-bound vs MILP", "",
        "Command: `" + " ".join(["OMP_NUM_THREADS=1 .venv/bin/python experiments/bab_bench.py",
                                 *(a for a in args.argv if a != "--summary-only")]) + "`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs, torch threads {args.threads}, "
        f"SCIP single-threaded; timeout {int(args.timeout)} s per method and instance; complete methods without the "
        "pre-attack of `verify` (`attack=False`).  ",
        "Times: wall time of `verify`; an undecided run (timeout / unknown) is charged the timeout, so medians and "
        "speed-ups with such runs are lower bounds for the MILP.", "",
        f"**STBP-unknown instances: {len(unknown)}; median speed-up of BaB over MILP(stbp big-M): "
        f"{statistics.median(sp):.1f}x** (target >= 2x; per-instance ratios: min {min(sp):.1f}x, max {max(sp):.1f}x). "
        "Solved within the timeout: " + ", ".join(
            f"{m} {sum(solved_time(v[m]) is not None for v in unknown.values())}/{len(unknown)}" for m in COMPLETE) + ".  "
        if sp else "No STBP-unknown instances yet.  ",
        *(f"By BaB's verdict: median speed-up {statistics.median(s):.1f}x on the {len(s)} {verdict} ones.  "
          for verdict in DECIDED if (s := speedups({k: v for k, v in unknown.items() if v["bab"]["status"] == verdict}))),
        f"All decided verdicts agree across methods: {'yes' if verdict_ok else 'NO'}.", "",
        *table(unknown_groups, "Instances STBP leaves unknown"), "",
        "verdicts: BaB's, v verified, f falsified.", "",
        *table(groups, "All instances"), "",
        "## BaB statistics on the STBP-unknown instances (sums)", "",
        "| model | threat | nodes | pruned | threat splits | ReLU splits | MILP leaves | attacks | bound s | MILP s | attack s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, threat), g in unknown_groups.items():
        s = {k: sum(v["bab"].get(k) or 0 for v in g.values()) for k in BAB_STATS}
        lines.append(f"| {model} | `{threat}` | {s['nodes']} | {s['pruned']} | {s['threat_splits']} | {s['relu_splits']} | "
                     f"{s['milp_leaves']} | {s['attacks']} | {s['bound_s']:.1f} | {s['milp_s']:.1f} | {s['attack_s']:.1f} |")
    lines += ["", f"Cactus data: `{Path(args.cactus).name}` (per method the sorted solve times of the decided runs, all "
              f"instances), plot `{Path(args.cactus).with_suffix('.png').name}`."]
    text = "\n".join(lines) + "\n"
    Path(args.md).write_text(text)
    cactus(inst, Path(args.cactus))
    return text


def cactus(inst: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {m: sorted(t for v in inst.values() if (t := solved_time(v[m])) is not None) for m in COMPLETE}
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "solved", "time_s"])
        for m, ts in series.items():
            w.writerows([m, k + 1, f"{t:.4f}"] for k, t in enumerate(ts))
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, ts in series.items():
        ax.plot(range(1, len(ts) + 1), ts, marker=".", label=m)
    ax.set(xlabel="instances solved", ylabel="time per instance (s)", yscale="log",
           title=f"Cactus plot, {len(inst)} instances, timeout {int(next(iter(inst.values()))['bab']['timeout'])} s")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(THREATS), choices=list(THREATS))
    p.add_argument("--n", nargs="+", type=int, default=[8, 4, 2], help="samples per model (one number, or one per model)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--budget-min", type=float, default=28.0, help="start no new run after this many minutes")
    p.add_argument("--out", default=str(RESULTS / "bab_bench.jsonl"))
    p.add_argument("--md", default=str(RESULTS / "bab_bench.md"))
    p.add_argument("--cactus", default=str(RESULTS / "bab_cactus.csv"))
    p.add_argument("--summary-only", action="store_true")
    args = p.parse_args(argv)
    args.argv = argv if argv is not None else os.sys.argv[1:]
    if not args.summary_only:
        run(args)
    print(summarize(args))


if __name__ == "__main__":
    main()
