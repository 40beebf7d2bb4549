"""Command line: ``stverify demo | verify | train`` (and ``bench`` / ``report`` when available)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .threats import EXAMPLES, ThreatError, parse_threat

DEMO_MODEL = "tiny"
DEMO_THREATS = ("anyframes:k=1,eps=8/255", "anypatch:eps=32/255,len=2,h=3,w=3", "linf:eps=4/255")
DEMO_INSTANCES = 4
# (label, method, options): every method, shown when it is available
DEMO_METHODS = (
    ("box-ibp", "box-ibp", {}),
    ("box-crown", "box-crown", {}),
    ("stbp-ibp", "stbp", {"relaxation": "ibp"}),
    ("stbp-crown", "stbp", {"relaxation": "crown"}),
    ("stbp-alpha", "stbp", {"relaxation": "alpha-crown"}),
    ("milp-scip", "milp", {"solver": "scip", "bounds": "stbp"}),
    ("milp-highs", "milp", {"solver": "highs", "bounds": "stbp"}),
    ("smt-z3", "smt", {}),
    ("bab", "bab", {}),
)
THREAT_HELP = "threat set, KIND:key=value,... e.g. " + "; ".join(EXAMPLES.values())


def _model_and_data(model: str, arch: str | None, data: str | None):
    """A zoo name or a model file; the data defaults to the zoo model's generated dataset."""
    from . import zoo
    from .data import ensure_dataset
    from .network.load import load_network

    if model in zoo.ARCHITECTURES:
        net = zoo.pretrained_network(model)
        data = data or str(ensure_dataset(zoo.ARCHITECTURES[model].dataset))
    else:
        if not Path(model).exists():
            raise SystemExit(f"error: --model {model!r} is neither a zoo model ({', '.join(zoo.ARCHITECTURES)}) nor an existing file")
        net = load_network(model, arch=arch)
        if data is None:
            raise SystemExit("error: --data is required with a model file (a MedMNIST-format .npz)")
    return net, data


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:+.4f}" if np.isfinite(v) else str(v)
    return str(v)


def _table(title: str, rows: list[dict]) -> Table:
    table = Table(title=title, show_lines=False)
    for col in ("instance", "threat", "method", "status", "margin_lb", "time_s", "details"):
        table.add_column(col, justify="right" if col in ("margin_lb", "time_s") else "left")
    style = {"verified": "green", "falsified": "red", "unknown": "yellow", "timeout": "magenta", "error": "bold red"}
    for r in rows:
        table.add_row(r["instance"], r["threat"], r["method"], f"[{style.get(r['status'], '')}]{r['status']}[/]",
                      _fmt(r["margin_lb"]), f"{r['time_s']:.3f}", r.get("details", ""))
    return table


def _details(res) -> str:
    s = res.stats
    parts = []
    if "unstable_relus" in s:
        parts.append(f"unstable={s['unstable_relus']}")
    for key in ("binaries", "n_binaries", "nodes"):
        if isinstance(s.get(key), (int, np.integer)):
            parts.append(f"{key}={s[key]}")
    if res.status in ("unknown", "timeout", "error") and res.message and not parts:
        parts.append(res.message[:60])
    return " ".join(parts)


def _console() -> Console:
    """Rich output; wide enough for the tables when stdout is not a terminal."""
    return Console() if sys.stdout.isatty() else Console(width=150)


def cmd_demo(args) -> int:
    from . import zoo
    from .data import ensure_dataset, load_npz
    from .verify import METHODS, verify

    console = _console()
    net = zoo.pretrained_network(args.model)
    X, Y = load_npz(ensure_dataset(zoo.ARCHITECTURES[args.model].dataset), "test")
    console.print(net.summary())
    methods = [m for m in DEMO_METHODS if m[1] in METHODS]
    console.print(f"\nmethods: {', '.join(m[0] for m in methods)}; first {args.n} correctly classified test inputs\n")
    picks = [i for i in range(len(Y)) if int(net.predict(X[i])) == int(Y[i])][: args.n]
    rows = []
    for spec in args.threats:
        threat = parse_threat(spec)
        for i in picks:
            for label, method, opts in methods:
                res = verify(net, X[i], int(Y[i]), threat, method=method, timeout=args.timeout, **opts)
                rows.append({"instance": f"#{i} (y={int(Y[i])})", "threat": threat.spec(), "method": label, "status": res.status,
                             "margin_lb": res.margin_lb, "time_s": res.time_s, "details": _details(res)})
    console.print(_table(f"stverify demo: {args.model} on generated data", rows))
    by = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r["status"] == "verified")
    console.print("verified per method: " + ", ".join(f"{m} {sum(v)}/{len(v)}" for m, v in by.items()))
    return 0


def cmd_verify(args) -> int:
    from .data import load_sample
    from .verify import verify

    try:
        threat = parse_threat(args.threat)
    except ThreatError as e:
        raise SystemExit(f"error: --threat: {e}") from None
    net, data = _model_and_data(args.model, args.arch, args.data)
    x, label = load_sample(data, args.split, args.index)
    y = label if args.label is None else args.label
    opts = {k: v for k, v in (("relaxation", args.relaxation), ("solver", args.solver), ("bounds", args.bounds)) if v is not None}
    res = verify(net, x, y, threat, method=args.method, timeout=args.timeout, **opts)
    if args.json:
        out = res.to_dict()
        out.update(instance={"data": str(data), "split": args.split, "index": args.index, "label": int(y)})
        if not args.counterexample:
            out["counterexample"] = None if res.counterexample is None else "(omitted; use --counterexample)"
        print(json.dumps(out))
    else:
        _console().print(_table(f"{Path(str(data)).name} [{args.split} #{args.index}]", [{
            "instance": f"#{args.index} (y={y})", "threat": threat.spec(), "method": args.method, "status": res.status,
            "margin_lb": res.margin_lb, "time_s": res.time_s, "details": _details(res) or res.message}]))
    if args.save_counterexample and res.counterexample is not None:
        np.save(args.save_counterexample, res.counterexample)
    return 0


def cmd_train(args) -> int:
    from .zoo.train import main as train_main

    return train_main(args.rest) or 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stverify", description="Exact and certified verification of 3D CNNs under spatio-temporal threat sets.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="verify a few generated instances with every method on a shipped model",
                       description="Loads a shipped zoo model and generated data and verifies a handful of instances with every available method.")
    d.add_argument("--model", default=DEMO_MODEL, help=f"zoo model (default {DEMO_MODEL})")
    d.add_argument("-n", type=int, default=DEMO_INSTANCES, help=f"instances per threat (default {DEMO_INSTANCES})")
    d.add_argument("--threats", nargs="+", default=list(DEMO_THREATS), help="threat sets to try")
    d.add_argument("--timeout", type=float, default=30.0, help="seconds per complete verification (default 30)")
    d.set_defaults(func=cmd_demo)

    v = sub.add_parser("verify", help="verify one instance", description="Verify one instance of a MedMNIST-format .npz against a threat set.")
    v.add_argument("--model", required=True, help="zoo model name, .onnx file, or .pt state file (with --arch)")
    v.add_argument("--arch", help="zoo architecture for a .pt state file (loaded with weights_only=True)")
    v.add_argument("--data", help="MedMNIST-format .npz (default: the zoo model's generated dataset)")
    v.add_argument("--split", default="test", choices=("train", "val", "test"))
    v.add_argument("--index", type=int, default=0)
    v.add_argument("--label", type=int, help="class to verify (default: the dataset label)")
    v.add_argument("--threat", required=True, help=THREAT_HELP)
    v.add_argument("--method", default="stbp", help="stbp, box-ibp, box-crown, milp, smt, bab, all (as available)")
    v.add_argument("--relaxation", choices=("ibp", "crown", "alpha-crown"), help="STBP relaxation (default crown)")
    v.add_argument("--solver", help="MILP backend: scip (default), highs, gurobi")
    v.add_argument("--bounds", help="big-M source for MILP: naive, stbp (default), lp")
    v.add_argument("--timeout", type=float, default=60.0)
    v.add_argument("--json", action="store_true", help="print the result schema as one JSON object on stdout")
    v.add_argument("--counterexample", action="store_true", help="include the counterexample in --json output")
    v.add_argument("--save-counterexample", metavar="FILE.npy", help="save a counterexample as .npy")
    v.set_defaults(func=cmd_verify)

    t = sub.add_parser("train", help="train a zoo model (see `stverify train -- --help`)", add_help=False)
    t.add_argument("rest", nargs=argparse.REMAINDER)
    t.set_defaults(func=cmd_train)

    for register in _extensions():
        register(sub)
    return p


def _extensions():
    """Sub-commands contributed by optional modules (bench, report)."""
    try:
        from .audit import cli as audit_cli
        from .bench import cli as bench_cli
    except ImportError:
        return []
    return [bench_cli.register, audit_cli.register]


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, IndexError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
