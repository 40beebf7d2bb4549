"""Fresh-process constant costs (issue 18), old and new stverify side by side.

Every measurement is a fresh python process (one torch thread), old (--old: the ``src`` of e.g. a
``git archive`` of commit 011dddd) and new (this checkout) alternating, --reps times; medians:
  * help: the CPU time (user + sys) of ``python -m stverify.cli --help``;
  * union: STBP on a union threat (zoo ``small``, test #0, ``anyframes:k=1,eps=8/255`` and
    ``anypatch:eps=8/255,len=2,h=4,w=4``): the first call's time and the second's;
  * linf: STBP and box-CROWN on a linf box (``linf:eps=1/255``) on the scaling models
    3x16x32x32 c4-16 and c16-32 (``scaling.py``): each the first call of its own process;
  * bench: ``stverify bench`` (zoo small, 4 samples, anyframes 8/255 and linf 2/255; stbp,
    box-crown, bab), the median time_s per method in its results, and the verify() time of a warm
    process on the same instances.
Results: one JSON line per measurement in results/first_call/first_call.jsonl and the tables in
results/first_call/first_call.md.

    git archive 011dddd | tar -x -C /tmp/old011
    .venv/bin/python experiments/first_call.py --old /tmp/old011/src
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEW_SRC = HERE.parent / "src"
RESULTS = HERE / "results" / "first_call"
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

CALLS = """
import json, sys, time
sys.path.insert(0, {here!r})
import torch
torch.set_num_threads(1)
from stverify.verify import verify
model, threat, method, calls = {model!r}, {threat!r}, {method!r}, {calls}
if model.startswith("zoo:"):
    from stverify import zoo
    from stverify.data import ensure_dataset, load_sample
    net = zoo.pretrained_network(model[4:])
    x, y = load_sample(ensure_dataset(zoo.ARCHITECTURES[model[4:]].dataset), "test", 0)
    y = int(y)
else:
    from scaling import build
    net, x, y = build(model)
times = []
for _ in range(calls):
    t = time.perf_counter()
    verify(net, x, y, threat, method=method)
    times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def python(src: Path, code: str) -> str:
    env = {**os.environ, **ENV, "PYTHONPATH": str(src)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def help_cpu(src: Path) -> float:
    """CPU seconds of ``python -m stverify.cli --help`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "stverify.cli", "--help"], env={**os.environ, **ENV, "PYTHONPATH": str(src)},
                   capture_output=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def calls(src: Path, model: str, threat: str, method: str, n: int) -> list[float]:
    return json.loads(python(src, CALLS.format(here=str(HERE), model=model, threat=threat, method=method, calls=n)))


BENCH = """timeout = 20
[[models]]
name = "small"
[samples]
n = 4
[[threats]]
kind = "anyframes"
eps = ["8/255"]
[[threats]]
kind = "linf"
eps = ["2/255"]
[[methods]]
name = "stbp"
method = "stbp"
[[methods]]
name = "box-crown"
method = "box-crown"
[[methods]]
name = "bab"
method = "bab"
"""

WARM = """
import json, statistics, time
import torch
torch.set_num_threads(1)
from stverify.bench import expand, load_config
from stverify.verify import verify
tasks, nets = expand(load_config({cfg!r}))
out = {{}}
for t in tasks:
    run = lambda: verify(nets[t.model], t.x, t.label, t.threat, method=t.call["method"], timeout=20)
    run()
    start = time.perf_counter()
    run()
    out.setdefault(t.method, []).append(time.perf_counter() - start)
print(json.dumps({{m: statistics.median(v) for m, v in out.items()}}))
"""


def bench(src: Path, work: Path) -> dict:
    """Median time_s per method of a ``stverify bench`` run, and of warm verify() calls."""
    cfg, out = work / "bench.toml", work / f"out-{time.time_ns()}"
    cfg.write_text(BENCH)
    subprocess.run([sys.executable, "-m", "stverify.cli", "bench", str(cfg), "--out", str(out)], check=True,
                   env={**os.environ, **ENV, "PYTHONPATH": str(src)}, capture_output=True)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    table = {m: statistics.median(r["time_s"] for r in rows if r["method"] == m) for m in {r["method"] for r in rows}}
    return {"bench": table, "warm": json.loads(python(src, WARM.format(cfg=str(cfg))))}


def measure(args, srcs: dict) -> list[dict]:
    rows = []
    for rep in range(args.reps):
        for version, src in (srcs.items() if rep % 2 == 0 else reversed(srcs.items())):
            rows.append({"what": "help", "version": version, "cpu_s": help_cpu(src)})
            for threat in ("anyframes:k=1,eps=8/255", "anypatch:eps=8/255,len=2,h=4,w=4"):
                t = calls(src, "zoo:small", threat, "stbp", 2)
                rows.append({"what": "union", "version": version, "threat": threat, "first_s": t[0], "second_s": t[1]})
            for model in ("3x16x32x32 c4-16", "3x16x32x32 c16-32"):
                for method in ("stbp", "box-crown"):
                    rows.append({"what": "linf", "version": version, "model": model, "method": method,
                                 "first_s": calls(src, model, "linf:eps=1/255", method, 1)[0]})
            if rep < args.bench_reps:
                with tempfile.TemporaryDirectory() as work:
                    rows.append({"what": "bench", "version": version, **bench(src, Path(work))})
            print(f"rep {rep + 1}/{args.reps} {version} done", flush=True)
    return rows


def tables(rows: list[dict]) -> str:
    med = lambda version, what, key, **match: statistics.median(  # noqa: E731
        r[key] for r in rows if r["what"] == what and r["version"] == version and all(r[k] == v for k, v in match.items()))
    out = ["## `stverify --help`: CPU seconds (user + sys), median", "", "| old | new | new / old |", "|---|---|---|"]
    o, n = med("old", "help", "cpu_s"), med("new", "help", "cpu_s")
    out += [f"| {o:.3f} | {n:.3f} | {n / o:.2f} |", "",
            "## STBP on a union threat (zoo small, test #0), fresh process: first and second call, median s", "",
            "| threat | old first | old second | new first | new second | new first - second |", "|---|---|---|---|---|---|"]
    for threat in sorted({r["threat"] for r in rows if r["what"] == "union"}):
        v = {(ver, k): med(ver, "union", k, threat=threat) for ver in ("old", "new") for k in ("first_s", "second_s")}
        out.append(f"| `{threat}` | {v['old', 'first_s']:.3f} | {v['old', 'second_s']:.3f} | {v['new', 'first_s']:.3f} | "
                   f"{v['new', 'second_s']:.3f} | {v['new', 'first_s'] - v['new', 'second_s']:.3f} |")
    out += ["", "## linf:eps=1/255, the first call of a fresh process: STBP vs box-CROWN, median s", "",
            "| model | old STBP | old box-CROWN | new STBP | new box-CROWN | new STBP <= 1.1 box-CROWN + 0.1 s |",
            "|---|---|---|---|---|---|"]
    for model in sorted({r["model"] for r in rows if r["what"] == "linf"}):
        v = {(ver, m): med(ver, "linf", "first_s", model=model, method=m) for ver in ("old", "new") for m in ("stbp", "box-crown")}
        ok = v["new", "stbp"] <= 1.1 * v["new", "box-crown"] + 0.1
        out.append(f"| {model} | {v['old', 'stbp']:.3f} | {v['old', 'box-crown']:.3f} | {v['new', 'stbp']:.3f} | "
                   f"{v['new', 'box-crown']:.3f} | {'yes' if ok else 'no'} |")
    benches = [r for r in rows if r["what"] == "bench"]
    if benches:
        out += ["", "## `stverify bench` tables (zoo small, 4 samples, anyframes 8/255 + linf 2/255): median time_s per "
                "method, against warm verify() calls on the same instances, s", "",
                "| method | old bench | new bench | warm verify() |", "|---|---|---|---|"]
        methods = sorted({m for r in benches for m in r["bench"]})
        pick = lambda ver, key, m: statistics.median(r[key][m] for r in benches if r["version"] == ver)  # noqa: E731
        for m in methods:
            out.append(f"| {m} | {pick('old', 'bench', m):.3f} | {pick('new', 'bench', m):.3f} | {pick('new', 'warm', m):.3f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", type=Path, required=True, help="the src folder of the old stverify")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--bench-reps", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = measure(args, {"old": args.old.resolve(), "new": NEW_SRC})
    with (args.out / "first_call.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    text = (f"# Fresh-process constant costs, old ({args.old}) vs new\n\n{platform.node()}, "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other jobs); one thread; "
            f"{args.reps} repetitions, old and new alternating.\n\n{tables(rows)}\n")
    (args.out / "first_call.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
