"""stverify ``bab`` against Marabou on the zoo's box threats (issue 18), old and new stverify side by side.

Instances: zoo tiny, tiny_std and small; the first --n correctly classified test samples; threats
linf, frames (the middle frame) and patch (a centred patch), each at two eps (``EPS``); exported by
``stverify export`` (ONNX + VNN-LIB, ``--rewrite conv2d``: Marabou's ONNX parser has no Conv3d) to
OUT/export.  Three worker processes, one thread each (OMP_NUM_THREADS=1, torch 1 thread, Marabou
numWorkers 1), warmed up on the first instance, then run every instance in turn, interleaved
(the order of the three rotates per instance), --reps times:
  * new: this checkout's stverify, ``load_network`` (the native ONNX) + ``load_vnnlib`` + ``bab``;
  * old: the same with the stverify of --old (e.g. a ``git archive`` of commit 011dddd);
  * marabou: ``Marabou.read_onnx`` (the conv2d rewrite) + ``solve(propertyFilename=...)``, in the
    python of --marabou-python (a scratch venv with ``maraboupy``: never a project dependency).
Timed per instance: the whole of that (model loading, property parsing, solving), inside the warm
worker.  Results: OUT/runs.jsonl (one line per run) and OUT/marabou_compare.md: per model x threat
kind the median time of each, the ratios, and the verdicts (which must agree).

    python3 -m venv /tmp/marabou && /tmp/marabou/bin/pip install maraboupy onnx
    git archive 011dddd | tar -x -C /tmp/old011
    .venv/bin/python experiments/marabou_compare.py --old /tmp/old011/src --marabou-python /tmp/marabou/bin/python
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "marabou_compare"
MODELS = ("tiny", "tiny_std", "small")
EPS = {"linf": ("2/255", "8/255"), "frames": ("8/255", "32/255"), "patch": ("16/255", "64/255")}
MARK = "@@result "

STVERIFY_WORKER = """
import json, sys, time
import torch
torch.set_num_threads(1)
import stverify as sv
from stverify.stdio import stdout_to_stderr
for line in sys.stdin:
    job = json.loads(line)
    start = time.perf_counter()
    net = sv.load_network(job["onnx"])
    prop = sv.load_vnnlib(job["vnnlib"], net)
    with stdout_to_stderr():
        res = prop.verify(method="bab", timeout=job["timeout"])
    answer = prop.answer(res)[0]
    print("@@result " + json.dumps({"result": answer, "time_s": time.perf_counter() - start}), flush=True)
"""

MARABOU_WORKER = """
import json, sys, time
from maraboupy import Marabou
for line in sys.stdin:
    job = json.loads(line)
    start = time.perf_counter()
    net = Marabou.read_onnx(job["onnx"])
    options = Marabou.createOptions(verbosity=0, timeoutInSeconds=int(job["timeout"]), numWorkers=1)
    answer = net.solve(propertyFilename=job["vnnlib"], options=options, verbose=False)[0]
    print("@@result " + json.dumps({"result": answer.lower(), "time_s": time.perf_counter() - start}), flush=True)
"""


class Worker:
    """A persistent process answering one job (a JSON line) at a time."""

    def __init__(self, python: str, code: str, src: str | None = None):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        if src is not None:
            env["PYTHONPATH"] = src
        self.proc = subprocess.Popen([python, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)

    def run(self, job: dict) -> dict:
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        raise RuntimeError(f"worker died (exit code {self.proc.wait()})")

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def export(out: Path, n: int) -> list[dict]:
    """The instances, exported with this checkout's stverify (module docstring); manifest rows."""
    threats = "\n".join(f'[[threats]]\nkind = "{k}"\neps = {list(e)}' for k, e in EPS.items()).replace("'", '"')
    models = "\n".join(f'[[models]]\nname = "{m}"' for m in MODELS)
    cfg = out / "instances.toml"
    cfg.write_text(f"timeout = 60\n{models}\n[samples]\nn = {n}\n{threats}\n[[methods]]\nname = \"bab\"\nmethod = \"bab\"\n")
    if not (out / "export" / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "stverify.cli", "export", str(cfg), "--out", str(out / "export"),
                        "--rewrite", "conv2d"], check=True, env={**os.environ, "PYTHONPATH": str(HERE.parent / "src")})
    return json.loads((out / "export" / "manifest.json").read_text())["instances"]


def summary(runs: list[dict]) -> str:
    per = defaultdict(lambda: defaultdict(list))  # (model, kind) -> tool -> median time per instance
    by_instance = defaultdict(lambda: defaultdict(list))
    for r in runs:
        by_instance[(r["model"], r["kind"], r["vnnlib"])][r["tool"]].append(r)
    disagree = []
    for (model, kind, vnnlib), tools in by_instance.items():
        for tool, rs in tools.items():
            per[(model, kind)][tool].append(statistics.median(r["time_s"] for r in rs))
        verdicts = {tool: rs[0]["result"] for tool, rs in tools.items()}
        if len({v for v in verdicts.values() if v in ("sat", "unsat")}) > 1:
            disagree.append(f"* {vnnlib}: {verdicts}")
    med = lambda v: statistics.median(v) if v else float("nan")  # noqa: E731
    lines = ["| model | threat | instances | new bab median s | old bab median s | Marabou median s | new / Marabou | old / Marabou |",
             "|---|---|---|---|---|---|---|---|"]
    for (model, kind), t in sorted(per.items()):
        new, old, mar = med(t["new"]), med(t["old"]), med(t["marabou"])
        lines.append(f"| {model} | {kind} | {len(t['new'])} | {new:.4f} | {old:.4f} | {mar:.4f} | {new / mar:.2f} | "
                     f"{old / mar:.2f} |")
    every = {tool: med([v for t in per.values() for v in t[tool]]) for tool in ("new", "old", "marabou")}
    lines.append(f"| all | all | {sum(len(t['new']) for t in per.values())} | {every['new']:.4f} | {every['old']:.4f} | "
                 f"{every['marabou']:.4f} | {every['new'] / every['marabou']:.2f} | {every['old'] / every['marabou']:.2f} |")
    verdicts = defaultdict(int)
    for tools in by_instance.values():
        verdicts[tuple(sorted((tool, rs[0]["result"]) for tool, rs in tools.items()))] += 1
    lines += ["", "Verdicts (tool: answer) and how many instances gave them:", ""]
    lines += [f"* {dict(k)}: {v}" for k, v in sorted(verdicts.items(), key=lambda kv: -kv[1])]
    lines += ["", f"Instances where a sat and an unsat disagree: {len(disagree)}"] + disagree
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="src folder of the old stverify (e.g. a git archive of 011dddd)")
    ap.add_argument("--marabou-python", required=True, help="a python with maraboupy installed")
    ap.add_argument("--n", type=int, default=5, help="samples per model")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    instances = export(args.out, args.n)
    root = args.out / "export"
    jobs = []
    for inst in instances:
        native = root / inst["onnx"].replace(".conv2d.onnx", ".onnx")
        jobs.append({"model": inst["model"], "kind": inst["threat"].split(":")[0], "vnnlib": inst["vnnlib"],
                     "native": str(native), "rewrite": str(root / inst["onnx"]), "path": str(root / inst["vnnlib"])})
    workers = {"new": Worker(sys.executable, STVERIFY_WORKER, str(HERE.parent / "src")),
               "old": Worker(sys.executable, STVERIFY_WORKER, str(Path(args.old).resolve())),
               "marabou": Worker(args.marabou_python, MARABOU_WORKER)}
    tools = list(workers)

    def job_for(tool, j):
        onnx = j["rewrite"] if tool == "marabou" else j["native"]
        return {"onnx": onnx, "vnnlib": j["path"], "timeout": args.timeout}

    for tool in tools:  # warm-up, untimed
        workers[tool].run(job_for(tool, jobs[0]))
    runs = []
    with (args.out / "runs.jsonl").open("w") as f:
        for rep in range(args.reps):
            for k, j in enumerate(jobs):
                for tool in tools[k % 3:] + tools[:k % 3]:
                    got = workers[tool].run(job_for(tool, j))
                    row = {"tool": tool, "rep": rep, "model": j["model"], "kind": j["kind"], "vnnlib": j["vnnlib"], **got}
                    runs.append(row)
                    f.write(json.dumps(row) + "\n")
                    f.flush()
    for w in workers.values():
        w.close()
    text = (f"# stverify bab vs Marabou on the zoo's box threats\n\n{platform.node()}, "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared); one thread per tool; "
            f"{len(jobs)} instances x {args.reps} repetitions, interleaved; time per instance: loading the ONNX and the "
            f"VNN-LIB file and solving, in a warm worker; the median over repetitions, then over instances.\n\n"
            f"{summary(runs)}\n")
    (args.out / "marabou_compare.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
