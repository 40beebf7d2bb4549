"""STBP vs box baselines: certified accuracy and time per instance, side by side in one run.

For each zoo model, threat kind and eps, the first N test inputs are bounded by
  box-ibp, box-crown      (IBP / CROWN over the threat's bounding box: a generic L-inf verifier)
  stbp-ibp, stbp-crown, stbp-alpha  (exact first layer, exact concretisation over the threat set)
Certified accuracy = fraction of the N inputs that are correctly classified and verified.
Results are appended to a JSONL file (one line per instance and method, flushed and fsynced), so an
interrupted run resumes where it stopped; the summary goes to a markdown file.

    python experiments/stbp_bench.py                       # the full grid (see --help)
    python experiments/stbp_bench.py --models tiny --n 10  # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from stverify import zoo
from stverify.bench.config import default_threat
from stverify.data import ensure_dataset, load_npz
from stverify.stbp_hybrid.certify import certify
from stverify.threats import parse_threat

METHODS = {  # name -> (relaxation, concretisation)
    "box-ibp": ("ibp", "box"),
    "box-crown": ("crown", "box"),
    "stbp-ibp": ("ibp", "threat"),
    "stbp-crown": ("crown", "threat"),
    "stbp-alpha": ("alpha-crown", "threat"),
}
KINDS = ("linf", "frames", "anyframes", "patch", "anypatch")
RESULTS = Path(__file__).resolve().parent / "results"


def run(args) -> list[dict]:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["model"], r["threat"], r["index"], r["method"])] = r
    torch.set_num_threads(args.threads)
    with out.open("a") as f:
        for name in args.models:
            net = zoo.pretrained_network(name)
            X, Y = load_npz(ensure_dataset(zoo.ARCHITECTURES[name].dataset), "test")
            for kind in args.kinds:
                for e in args.eps:
                    spec = default_threat(kind, f"{e}/255", net.input_shape)
                    threat = parse_threat(spec)
                    for i in range(args.n):
                        correct = int(net.predict(X[i])) == int(Y[i])
                        for method in args.methods:
                            key = (name, spec, i, method)
                            if key in done:
                                continue
                            rec = {"model": name, "kind": kind, "eps": e, "threat": spec, "index": i, "method": method, "correct": correct}
                            if correct:
                                relax, conc = METHODS[method]
                                start = time.perf_counter()
                                cert = certify(net, X[i], int(Y[i]), threat, relax, conc, alpha_steps=args.alpha_steps)
                                rec.update(verified=cert.verified, margin_lb=cert.min_margin, time_s=time.perf_counter() - start,
                                           unstable=sum(cert.unstable.values()))
                            else:
                                rec.update(verified=False, margin_lb=None, time_s=0.0, unstable=None)
                            f.write(json.dumps(rec) + "\n")
                            f.flush()
                            os.fsync(f.fileno())
                            done[key] = rec
                    print(f"{name} {spec}: " + ", ".join(
                        f"{m} {sum(done[(name, spec, i, m)]['verified'] for i in range(args.n))}/{args.n}" for m in args.methods), flush=True)
    return [r for r in done.values() if r["model"] in args.models and r["method"] in args.methods]


def summarize(rows: list[dict], methods, path: Path) -> str:
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["model"], r["kind"], r["eps"]), {}).setdefault(r["method"], []).append(r)
    head = "| model | kind | eps | n | " + " | ".join(f"{m} cert. acc" for m in methods) + " | STBP/box-IBP | STBP/box-CROWN | " + \
        " | ".join(f"{m} median s" for m in methods) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    ratio = lambda a, b: f"{a / b:.2f}" if b else ("inf" if a else "-")  # noqa: E731
    totals = {m: [0, 0] for m in methods}
    times = {m: [] for m in methods}
    for (model, kind, eps), per in sorted(groups.items(), key=lambda kv: (kv[0][0], KINDS.index(kv[0][1]), kv[0][2])):
        n = len(per[methods[0]])
        acc = {m: sum(r["verified"] for r in per.get(m, [])) for m in methods}
        for m in methods:
            totals[m][0] += acc[m]
            totals[m][1] += n
            times[m] += [r["time_s"] for r in per.get(m, []) if r["correct"]]
        med = {m: statistics.median([r["time_s"] for r in per.get(m, []) if r["correct"]] or [0]) for m in methods}
        lines.append(f"| {model} | {kind} | {eps}/255 | {n} | " + " | ".join(f"{acc[m] / n:.2f}" for m in methods) +
                     f" | {ratio(acc.get('stbp-crown', 0), acc.get('box-ibp', 0))} | {ratio(acc.get('stbp-crown', 0), acc.get('box-crown', 0))} | " +
                     " | ".join(f"{med[m]:.3f}" for m in methods) + " |")
    lines += ["", "Overall certified accuracy: " + ", ".join(f"{m} {totals[m][0]}/{totals[m][1]}" for m in methods),
              "Median time per instance (s): " + ", ".join(f"{m} {statistics.median(times[m] or [0]):.3f}" for m in methods)]
    text = "\n".join(lines)
    path.write_text(f"# STBP vs box baselines\n\nMachine: {platform.processor() or platform.machine()}, "
                    f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}.\n"
                    f"Command: `python experiments/stbp_bench.py {' '.join(os.sys.argv[1:])}`\n\n{text}\n")
    return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["tiny", "tiny_std", "small", "medmnist"])
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--eps", nargs="+", type=int, default=[1, 2, 4, 8], help="eps numerators over 255")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--n", type=int, default=20, help="test inputs per model (the first n)")
    p.add_argument("--alpha-steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "stbp_bench.jsonl"))
    p.add_argument("--summary", default=str(RESULTS / "stbp_bench.md"))
    args = p.parse_args(argv)
    rows = run(args)
    print(summarize(rows, args.methods, Path(args.summary)))


if __name__ == "__main__":
    main()
