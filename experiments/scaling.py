"""Scaling benchmark (issue 11): bound propagation on mid-size 3D CNNs, previous vs current code.

Models: the zoo's (first test sample) and He-initialised scaling models (``SCALING``: Conv3d(k3,
s2, p1) stacks with ReLUs, then Linear(10); weights N(0, 2 / fan_in), biases U(+-1/sqrt(fan_in))
as torch's default, seed 0; input uniform in [0, 1]^shape with seed 1, label the predicted class).
Threats per model: linf, anyframes, anypatch (``THREATS``).  Measurements, each in a fresh
process so its memory is its own:
  * bounds: ``certify`` per model x relaxation (ibp, crown, alpha-crown) x threat kind with the
    current code, and with the previous code (commit 6c89029, imported from ``--old``, a git
    worktree's ``src``) where it finishes: every zoo case, CROWN on linf for every scaling model, and
    more on the smaller ones (``OLD_SCALING``).  Old and new run back to back per case.
    Reported: median wall time over ``--reps`` runs after one warm-up run on a tiny network (one
    run when the first takes > 5 s), the peak resident memory above the process's footprint
    before the call (Linux VmHWM, reset first), and the margin lower bounds.
  * STBP vs box-CROWN on linf: both in one process, alternating, medians of max(15, ``--reps``) runs.
  * branch-and-bound: the instances ``bab_bench.py`` found STBP leaves unknown
    (``results/bab_bench.jsonl``), old and new alternating, median of ``--reps`` runs each.
A case that runs past ``--limit`` seconds is recorded as such.  Results: one JSON line per
measurement in ``results/scaling/scaling.jsonl`` (a rerun skips what is there), the tables in
``results/scaling/scaling.md`` and the figure ``results/scaling/time_vs_relus.png``.

    git -C . worktree add ../old-6c89029 6c89029
    OMP_NUM_THREADS=1 .venv/bin/python experiments/scaling.py --old ../old-6c89029/src   # ~40 min
    .venv/bin/python experiments/scaling.py --summary-only
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
NEW_SRC = HERE.parent / "src"
RESULTS = HERE / "results" / "scaling"
SCALING = {  # name -> (input C x T x H x W, [(channels, stride)] of the k3 p1 convolutions)
    "1x8x16x16 c4-8": ((1, 8, 16, 16), [(4, 2), (8, 2)]),
    "3x16x32x32 c4-16": ((3, 16, 32, 32), [(4, 2), (16, 2)]),
    "3x16x32x32 c16-32": ((3, 16, 32, 32), [(16, 2), (32, 2)]),
    "3x16x32x32 c4-16-32": ((3, 16, 32, 32), [(4, 2), (16, 2), (32, 1)]),
    "3x16x64x64 c4-16": ((3, 16, 64, 64), [(4, 2), (16, 2)]),
    "3x16x64x64 c16-32": ((3, 16, 64, 64), [(16, 2), (32, 2)]),
    "1x64x64x64 c4-16": ((1, 64, 64, 64), [(4, 2), (16, 2)]),
}
ZOO = ("tiny", "tiny_std", "tiny_maxpool", "small", "medmnist")
THREATS = {
    "zoo": {"linf": "linf:eps=2/255", "anyframes": "anyframes:k=1,eps=8/255", "anypatch": "anypatch:eps=8/255,len=2,h=3,w=3"},
    "scaling": {"linf": "linf:eps=1/255", "anyframes": "anyframes:k=1,eps=4/255",
                "anypatch": "anypatch:eps=4/255,len=4,h=8,w=8"},
}
RELAXATIONS = ("ibp", "crown", "alpha-crown")
SPEEDUP_MODELS = [m for m in SCALING if m.startswith(("3x16x32x32", "3x16x64x64"))]  # the issue's >= 5x models
ALL_KINDS = ("linf", "anyframes", "anypatch")
OLD_SCALING = {  # the previous code on the scaling models: model -> relaxation -> threat kinds (CROWN on linf always)
    "1x8x16x16 c4-8": {"crown": ALL_KINDS, "alpha-crown": ALL_KINDS},
    "3x16x32x32 c4-16": {"crown": ALL_KINDS, "alpha-crown": ALL_KINDS},
    "3x16x32x32 c16-32": {"crown": ("linf",), "alpha-crown": ("linf",)},
}


# --- the child: one measurement, with whichever stverify is on the path -----------------------
def build(model: str):
    """(net, x, y) of a zoo or scaling model, with the imported stverify's classes."""
    from stverify import zoo
    from stverify.data import ensure_dataset, load_sample
    from stverify.network import Conv3d, Flatten, Linear, Network, ReLU

    if model in ZOO:
        net = zoo.pretrained_network(model)
        x, y = load_sample(ensure_dataset(zoo.ARCHITECTURES[model].dataset), "test", 0)
        return net, x, int(y)
    shape, convs = SCALING[model]
    rng = np.random.default_rng(0)
    layers, s = [], shape
    for ch, stride in convs:
        fan = s[0] * 27
        conv = Conv3d(rng.normal(size=(ch, s[0], 3, 3, 3)) * np.sqrt(2 / fan), rng.uniform(-1, 1, ch) / np.sqrt(fan),
                      (stride,) * 3, (1, 1, 1))
        layers += [conv, ReLU()]
        s = conv.output_shape(s)
    flat = int(np.prod(s))
    layers += [Flatten(), Linear(rng.normal(size=(10, flat)) * np.sqrt(2 / flat), rng.uniform(-1, 1, 10) / np.sqrt(flat))]
    net = Network(layers, shape, name=model)
    x = np.random.default_rng(1).uniform(size=shape)
    return net, x, int(net.predict(x))


def _reset_peak() -> int:
    """Reset the resident-memory high-water mark (Linux); returns the current resident size."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def _status(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _warm_up(certify, threat, relaxation, concretize):
    """One call on a tiny network first, so lazy initialisation is not timed."""
    from stverify.network import Conv3d, Flatten, Linear, Network, ReLU

    rng = np.random.default_rng(0)
    net = Network([Conv3d(rng.normal(size=(2, 1, 3, 3, 3)), np.zeros(2), (1, 1, 1), (1, 1, 1)), ReLU(),
                   Conv3d(rng.normal(size=(2, 2, 3, 3, 3)), np.zeros(2), (1, 1, 1), (1, 1, 1)), ReLU(), Flatten(),
                   Linear(rng.normal(size=(3, 2 * 4 * 9 * 9)), np.zeros(3))], (1, 4, 9, 9))
    certify(net, rng.uniform(size=(1, 4, 9, 9)), 0, threat.__class__(**{**threat.__dict__, **(
        {"h": 3, "w": 3, "len": 2, "area": None} if hasattr(threat, "h") else {})}), relaxation, concretize)


def child_bounds(job: dict) -> dict:
    import torch
    from stverify.stbp_hybrid.certify import certify
    from stverify.threats import parse_threat

    torch.set_num_threads(job["threads"])
    net, x, y = build(job["model"])
    threat = parse_threat(job["threat"])
    _warm_up(certify, threat, job["relaxation"], job["concretize"])
    times, base = [], _reset_peak()
    for rep in range(job["reps"]):
        t = time.perf_counter()
        cert = certify(net, x, y, threat, job["relaxation"], job["concretize"])
        times.append(time.perf_counter() - t)
        if rep == 0:
            peak = _status("VmHWM") - base
            if times[0] > 5:
                break
    return {"time_s": statistics.median(times), "times": times, "peak_mb": peak / 2 ** 20, "min_margin": cert.min_margin,
            "margin_lb": [float(v) for v in cert.margin_lb], "unstable": sum(cert.unstable.values()), "relus": net.n_relus}


def child_pair(job: dict) -> dict:
    """STBP and box-CROWN on the same linf instance, alternating in one process."""
    import torch
    from stverify.stbp_hybrid.certify import certify
    from stverify.threats import parse_threat

    torch.set_num_threads(job["threads"])
    net, x, y = build(job["model"])
    threat = parse_threat(job["threat"])
    for conc in ("threat", "box"):
        _warm_up(certify, threat, "crown", conc)
    times = {"threat": [], "box": []}
    for _ in range(max(15, job["reps"])):
        for conc in ("threat", "box"):
            t = time.perf_counter()
            certify(net, x, y, threat, "crown", conc)
            times[conc].append(time.perf_counter() - t)
    return {"stbp_s": statistics.median(times["threat"]), "box_crown_s": statistics.median(times["box"]), "times": times}


def child_bab(job: dict) -> dict:
    import torch
    from stverify import zoo
    from stverify.data import ensure_dataset, load_npz
    from stverify.verify import verify

    torch.set_num_threads(job["threads"])
    net = zoo.pretrained_network(job["model"])
    X, Y = load_npz(ensure_dataset(zoo.ARCHITECTURES[job["model"]].dataset), "test")
    x, y = X[job["index"]], int(Y[job["index"]])
    verify(net, x, y, job["threat"], method="stbp")  # warm-up
    runs = [verify(net, x, y, job["threat"], method="bab", timeout=60, attack=False) for _ in range(job["reps"])]
    return {"time_s": statistics.median(r.time_s for r in runs), "times": [r.time_s for r in runs],
            "verdict": runs[-1].status, "nodes": runs[-1].stats.get("nodes")}


# --- the parent -----------------------------------------------------------------------------------
def measure(job: dict, src: Path, limit: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(job["threads"])}
    t = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], env=env, capture_output=True, text=True,
                           timeout=limit)
    except subprocess.TimeoutExpired:
        return {**job, "status": "limit", "wall_s": time.perf_counter() - t}
    if p.returncode != 0:
        return {**job, "status": "error", "message": p.stderr.strip().splitlines()[-1][:300] if p.stderr.strip() else ""}
    return {**job, "status": "ok", **json.loads(p.stdout.strip().splitlines()[-1])}


def jobs(args) -> list[dict]:
    """Every measurement, old and new of one case back to back."""
    out = []
    base = {"threads": args.threads, "reps": args.reps}
    for model in args.models:
        group = "zoo" if model in ZOO else "scaling"
        for kind, threat in THREATS[group].items():
            for relax in RELAXATIONS:
                impls = ["new"]
                old_kinds = OLD_SCALING.get(model, {}).get(relax, ("linf",) if relax == "crown" else ())
                if group == "zoo" or kind in old_kinds:
                    impls = ["old", "new"]
                for impl in impls:
                    out.append({**base, "kind": "bounds", "impl": impl, "model": model, "threat": threat, "threat_kind": kind,
                                "relaxation": relax, "concretize": "threat"})
            if kind == "linf":  # the previous code only where its CROWN takes seconds
                out += [{**base, "kind": "pair", "impl": impl, "model": model, "threat": threat, "threat_kind": kind}
                        for impl in (("old", "new") if group == "zoo" or model in OLD_SCALING else ("new",))]
    for model, threat, index in bab_instances() if args.bab else []:
        out += [{**base, "kind": "bab", "impl": impl, "model": model, "threat": threat, "index": index}
                for impl in ("old", "new")]
    return out


def bab_instances() -> list[tuple]:
    rows = [json.loads(line) for line in (HERE / "results" / "bab_bench.jsonl").read_text().splitlines() if line.strip()]
    inst: dict = {}
    for r in rows:
        inst.setdefault((r["model"], r["threat"], r["index"]), {})[r["method"]] = r
    return sorted(k for k, v in inst.items() if "stbp" in v and "bab" in v and v["stbp"]["status"] != "verified")


def key(job: dict) -> tuple:
    return tuple(job.get(k) for k in ("kind", "impl", "model", "threat", "relaxation", "index"))


def run(args) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {key(r) for r in load(out)}
    stop = time.perf_counter() + 60 * args.budget_min
    with out.open("a") as f:
        for job in jobs(args):
            if key(job) in done:
                continue
            if time.perf_counter() > stop:
                print("budget reached; rerun to resume", flush=True)
                return
            src = Path(args.old) if job["impl"] == "old" else Path(args.new)
            row = measure(job, src, args.limit if job["kind"] != "bab" else 10 * args.limit)
            row["load1"] = os.getloadavg()[0]
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
            print(job["kind"], job["impl"], job["model"], job["threat"], job.get("relaxation", ""), row["status"],
                  f"{row.get('time_s', row.get('stbp_s', 0)) or 0:.3f}s", flush=True)


# --- summary ------------------------------------------------------------------------------------
def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def cell_time(r: dict | None, limit: float) -> str:
    if r is None:
        return "-"
    if r["status"] == "limit":
        return f"> {limit:.0f}"
    if r["status"] != "ok":
        return "error"
    return f"{r['time_s']:.3f}" if r["time_s"] < 10 else f"{r['time_s']:.1f}"


def summarize(args) -> str:
    rows = load(Path(args.out))
    by = {key(r): r for r in rows}
    def get(kind, impl, model, threat, relax=None, index=None):
        return by.get((kind, impl, model, threat, relax, index))

    lines = [
        "# Scaling benchmark: bound propagation, previous (6c89029) vs current code", "",
        "Command: `OMP_NUM_THREADS=1 .venv/bin/python experiments/scaling.py "
        + " ".join(a if " " not in a else repr(a) for a in _measuring_argv(args.argv)) + "`  "
        + (f"\n{args.note}  " if args.note else ""),
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs (1-min load average during the "
        f"run: median {statistics.median(r['load1'] for r in rows):.1f}, max {max(r['load1'] for r in rows):.1f}), "
        f"torch threads {args.threads}, one process per measurement; time limit {args.limit:.0f} s per bound measurement.  ",
        "Time: median wall time of `certify` over the repetitions after a warm-up call on a tiny network (a single run "
        "when it takes over 5 s); memory: peak resident memory of the call above the process's footprint before it. "
        "Old and new ran back to back for each case, so their ratio is measured under the same load.", "",
    ]
    lines += headline(rows, get, args.limit)
    lines += ["", "## Bounds per model, relaxation and threat", "",
              "| model | ReLUs | threat | relaxation | new s | old s | speed-up | new peak MB | old peak MB | new min margin "
              "| old min margin | max abs diff | unstable |", "|" + "---|" * 13]
    for model in [*ZOO, *SCALING]:
        group = "zoo" if model in ZOO else "scaling"
        for kind, threat in THREATS[group].items():
            for relax in RELAXATIONS:
                new, old = get("bounds", "new", model, threat, relax), get("bounds", "old", model, threat, relax)
                if new is None:
                    continue
                ok = lambda r: r is not None and r["status"] == "ok"  # noqa: E731
                speed = f"{old['time_s'] / new['time_s']:.1f}x" if ok(old) and ok(new) else (
                    f"> {args.limit / new['time_s']:.0f}x" if old and old["status"] == "limit" and ok(new) else "-")
                diff = (f"{max(abs(a - b) for a, b in zip(new['margin_lb'], old['margin_lb']) if np.isfinite(a)):.1e}"
                        if ok(old) and ok(new) else "-")
                lines.append(f"| {model} | {new.get('relus', '-')} | {kind} | {relax} | {cell_time(new, args.limit)} | "
                             f"{cell_time(old, args.limit)} | {speed} | {new.get('peak_mb', 0):.0f} | "
                             + (f"{old['peak_mb']:.0f}" if ok(old) else "-") + " | "
                             + (f"{new['min_margin']:.4f}" if ok(new) else "-") + " | "
                             + (f"{old['min_margin']:.4f}" if ok(old) else "-") + f" | {diff} | {new.get('unstable', '-')} |")
    lines += ["", "## STBP vs box-CROWN on linf (the same process, alternating)", "",
              "| model | new STBP s | new box-CROWN s | new STBP / box-CROWN | old STBP s | old box-CROWN s "
              "| old STBP / box-CROWN |",
              "|---|---|---|---|---|---|---|"]
    for model in [*ZOO, *SCALING]:
        threat = THREATS["zoo" if model in ZOO else "scaling"]["linf"]
        cells = []
        for impl in ("new", "old"):
            r = get("pair", impl, model, threat)
            cells += ([f"{r['stbp_s']:.3f}", f"{r['box_crown_s']:.3f}", f"{r['stbp_s'] / r['box_crown_s']:.2f}"]
                      if r and r["status"] == "ok" else ["> limit" if r and r["status"] == "limit" else "-"] * 3)
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", "## Branch-and-bound on the instances STBP leaves unknown (`bab_bench.py`)", "",
              "| model | threat | index | old s | new s | speed-up | old verdict | new verdict | new nodes |",
              "|---|---|---|---|---|---|---|---|---|"]
    for model, threat, index in bab_instances():
        old, new = get("bab", "old", model, threat, None, index), get("bab", "new", model, threat, None, index)
        if not (old and new and old["status"] == new["status"] == "ok"):
            continue
        lines.append(f"| {model} | `{threat}` | {index} | {old['time_s']:.3f} | {new['time_s']:.3f} | "
                     f"{old['time_s'] / new['time_s']:.1f}x | {old['verdict']} | {new['verdict']} | {new['nodes']} |")
    lines += ["", "Figure: `time_vs_relus.png` (CROWN and alpha-CROWN on linf, time against the number of ReLUs)."]
    text = "\n".join(lines) + "\n"
    Path(args.md).write_text(text)
    figure(rows, get, Path(args.md).with_name("time_vs_relus.png"), args.limit)
    return text


def _measuring_argv(argv: list[str]) -> list[str]:
    """The command line without the summary-only flags."""
    out, skip = [], False
    for a in argv:
        if skip or a == "--summary-only":
            skip = False
            continue
        if a == "--note":
            skip = True
            continue
        out.append(a)
    return out


def headline(rows, get, limit) -> list[str]:
    out = ["## Headline", ""]
    ratios = []
    for model in SPEEDUP_MODELS:
        threat = THREATS["scaling"]["linf"]
        old, new = get("bounds", "old", model, threat, "crown"), get("bounds", "new", model, threat, "crown")
        if new and new["status"] == "ok" and old:
            r = old["time_s"] / new["time_s"] if old["status"] == "ok" else None
            ratios.append(f"{model}: " + (f"{r:.0f}x" if r else f"> {limit / new['time_s']:.0f}x (old past the limit)"))
    out.append("* CROWN speed-up on linf (old / new time): " + "; ".join(ratios) + ".")
    pairs = [r for r in rows if r["kind"] == "pair" and r["impl"] == "new" and r["status"] == "ok"]
    if pairs:
        q = [r["stbp_s"] / r["box_crown_s"] for r in pairs]
        out.append(f"* STBP / box-CROWN time on linf, current code: median {statistics.median(q):.2f}, "
                   f"range {min(q):.2f} to {max(q):.2f} over {len(q)} models (the same computation: a linf set is one box).")
    babs = [(get("bab", "old", *k[:2], None, k[2]), get("bab", "new", *k[:2], None, k[2])) for k in bab_instances()]
    babs = [(o, n) for o, n in babs if o and n and o["status"] == n["status"] == "ok"]
    if babs:
        mo, mn = statistics.median(o["time_s"] for o, _ in babs), statistics.median(n["time_s"] for _, n in babs)
        agree = all(o["verdict"] == n["verdict"] for o, n in babs)
        per = statistics.median(o["time_s"] / n["time_s"] for o, n in babs)
        out.append(f"* Branch-and-bound, {len(babs)} STBP-unknown instances of `bab_bench.py`: median time old {mo:.3f} s, "
                   f"new {mn:.3f} s, **{mo / mn:.1f}x** (median of the per-instance speed-ups {per:.1f}x); the same "
                   f"verdicts: {'yes' if agree else 'NO'}.")
    crown = [(o, n) for o in rows if o["kind"] == "bounds" and o["impl"] == "old" and o["status"] == "ok"
             and o["relaxation"] != "ibp" for n in [get("bounds", "new", o["model"], o["threat"], o["relaxation"])]
             if n and n["status"] == "ok"]
    for relax in ("crown", "alpha-crown"):
        pairs = [(np.array(o["margin_lb"]), np.array(n["margin_lb"])) for o, n in crown if o["relaxation"] == relax]
        if pairs:
            fin = [(a[np.isfinite(a)], b[np.isfinite(b)]) for a, b in pairs]
            diff = max(float(np.max(np.abs(b - a))) for a, b in fin)
            looser = min(float(np.min(b - a)) for a, b in fin)
            tighter = sum(bool(np.min(b) > np.min(a) + 1e-9) for a, b in fin)
            out.append(f"* {relax} margins vs the previous code over {len(pairs)} cases: max abs difference {diff:.1e}, "
                       f"most negative (new - old) {looser:.1e}"
                       + (f"; min margin strictly tighter in {tighter}" if relax != "crown" else "")
                       + ".")
    return out


def figure(rows, get, path: Path, limit) -> None:
    """Time of one certify call on linf against the number of ReLUs, one marker per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for impl, relax, marker, color in (("old", "crown", "s", "C0"), ("new", "crown", "o", "C1"),
                                       ("new", "alpha-crown", "^", "C2"), ("new", "ibp", "v", "C3")):
        pts, past = [], []
        for model in [*ZOO, *SCALING]:
            threat = THREATS["zoo" if model in ZOO else "scaling"]["linf"]
            r, new = get("bounds", impl, model, threat, relax), get("bounds", "new", model, threat, "crown")
            if r and r["status"] == "ok":
                pts.append((r["relus"], r["time_s"]))
            elif r and r["status"] == "limit" and new and new["status"] == "ok":
                past.append(new["relus"])
        if pts:
            ax.scatter(*zip(*pts), marker=marker, color=color, label=f"{relax} ({impl} code)", zorder=3)
        if past:
            ax.scatter(past, [limit] * len(past), marker=marker, facecolors="none", edgecolors=color, zorder=3,
                       label=f"{relax} ({impl} code): past the {limit:.0f} s limit")
    labelled = [(r["relus"], r["time_s"], m) for m in SCALING
                for r in [get("bounds", "new", m, THREATS["scaling"]["linf"], "crown")] if r and r["status"] == "ok"]
    for k, (x, y, model) in enumerate(sorted(labelled)):  # alternately below and above, so neighbours do not overlap
        ax.annotate(model, (x, y), textcoords="offset points", xytext=(4, (-9, 5)[k % 2]), fontsize=6)
    ax.set(xscale="log", yscale="log", xlabel="ReLUs", ylabel="time per certify call (s)",
           title="Bounds on linf, one marker per model (zoo and scaling models)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", help="src directory of the previous code (a git worktree of commit 6c89029)")
    p.add_argument("--new", default=str(NEW_SRC), help="src directory of the current code (default: this checkout's)")
    p.add_argument("--models", nargs="*", default=[*ZOO, *SCALING], choices=[*ZOO, *SCALING])
    p.add_argument("--no-bab", dest="bab", action="store_false", help="skip the branch-and-bound measurements")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--limit", type=float, default=240.0, help="seconds per bound measurement (old or new)")
    p.add_argument("--budget-min", type=float, default=60.0, help="start no new measurement after this many minutes")
    p.add_argument("--out", default=str(RESULTS / "scaling.jsonl"))
    p.add_argument("--md", default=str(RESULTS / "scaling.md"))
    p.add_argument("--summary-only", action="store_true")
    p.add_argument("--note", help="a line for the summary's header (e.g. which commit --new held)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        print(json.dumps({"bounds": child_bounds, "pair": child_pair, "bab": child_bab}[job["kind"]](job)))
        return
    args.argv = argv if argv is not None else sys.argv[1:]
    if not args.summary_only:
        if not args.old:
            p.error("--old is required to measure (the previous code's src directory)")
        run(args)
    print(summarize(args))


if __name__ == "__main__":
    main()
