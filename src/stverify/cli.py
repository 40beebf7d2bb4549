"""Command line: ``stverify demo | verify | train | render`` (and the sub-commands of ``_extensions``).

Errors and exit codes (for every sub-command, registered here or by an extension): 0 done;
1 a report found soundness violations; 2 the input is wrong (``InputError``: one line on stderr
naming the file, field or option, never a traceback; argument errors too; also a file that cannot
be read or written); 3 an internal error, i.e. a bug in stverify (one line saying so; ``--debug``
anywhere on the command line prints the traceback, for any error); 130 interrupted.  ``--json``
prints exactly one JSON document per instance on stdout: what solvers print goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from . import validation
from .errors import InputError
from .instance_args import add_instance_arguments, glue_negative_domain, instance_property, read_data
from .properties import parse_property
from .interchange.vnncomp import format_result
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
METHOD_FLAGS = ("relaxation", "solver", "bounds", "device")  # verify options given as --flags
EXIT_INPUT, EXIT_BUG, EXIT_INTERRUPTED = 2, 3, 130
STYLE = {"verified": "green", "falsified": "red", "unknown": "yellow", "timeout": "magenta", "error": "bold red",
         "skipped": "dim"}


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block) and exit code 2."""

    def error(self, message):
        self.exit(EXIT_INPUT, f"error: {_one_line(message)} (see `{self.prog} --help`)\n")


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _threat(text: str, flag: str):
    try:
        return parse_threat(text)
    except ThreatError as e:
        raise ThreatError(f"{flag}: {e}") from None


def _model(model: str, arch: str | None):
    """--model: a zoo name or a model file (.onnx, or a .pt/.pth state file with --arch)."""
    from . import zoo
    from .network.load import load_network

    if model in zoo.ARCHITECTURES:
        if arch is not None:
            raise InputError(f"--arch applies to a .pt/.pth state file, not to the zoo model {model!r}")
        return zoo.pretrained_network(model)
    if not Path(model).exists():
        raise InputError(f"--model {model!r} is neither a zoo model ({', '.join(zoo.ARCHITECTURES)}) nor an existing file")
    if arch is not None and Path(model).suffix.lower() not in (".pt", ".pth"):
        raise InputError(f"--arch applies to a .pt/.pth state file, not to {model!r}")
    return load_network(model, arch=arch)


def _model_and_data(model: str, arch: str | None, data: str | None):
    """The model (``_model``) and its data: default the zoo model's generated dataset."""
    from . import zoo
    from .data import ensure_dataset

    net = _model(model, arch)
    if data is None:
        if model not in zoo.ARCHITECTURES:
            raise InputError("--data is required with a model file (an .npz file or a dataset name)")
        data = str(ensure_dataset(zoo.dataset_of(model)))
    return net, data


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, (float, np.floating)):
        return f"{v:+.4f}" if np.isfinite(v) else str(v)
    return str(v)


def _table(title: str, rows: list[dict]) -> Table:
    table = Table(title=title, show_lines=False)
    cols = ["instance", "threat", "method", "status", "margin_lb"]
    cols += ["margin_ub"] if any(r.get("margin_ub") is not None for r in rows) else []
    for col in cols + ["time_s", "details"]:
        table.add_column(col, justify="right" if col in ("margin_lb", "margin_ub", "time_s") else "left")
    for r in rows:
        time_s = "" if r.get("time_s") is None else f"{r['time_s']:.3f}"
        table.add_row(r["instance"], r["threat"], r["method"], f"[{STYLE.get(r['status'], '')}]{r['status']}[/]",
                      *(_fmt(r.get(c)) for c in cols[4:]), time_s, r.get("details", ""))
    return table


def _details(status: str, stats: dict, message: str) -> str:
    """Sizes of the search, and for a result that did not decide, why (never hidden)."""
    parts = []
    if "unstable_relus" in stats:
        parts.append(f"unstable={stats['unstable_relus']}")
    for key in ("binaries", "n_binaries", "nodes"):
        if isinstance(stats.get(key), (int, np.integer)):
            parts.append(f"{key}={stats[key]}")
    if status in ("unknown", "timeout", "error", "skipped") and message:
        parts.append(_one_line(message))
    return " ".join(parts)


def _console() -> Console:
    """Rich output; wide enough for the tables when stdout is not a terminal."""
    return Console() if sys.stdout.isatty() else Console(width=150)


def cmd_demo(args) -> int:
    from . import zoo
    from .data import ensure_dataset, load_npz
    from .stdio import stdout_to_stderr
    from .verify import METHODS, verify

    n = validation.integer(args.n, "-n", lo=1)
    timeout = validation.timeout(args.timeout, "--timeout")
    threats = [_threat(spec, "--threats") for spec in args.threats]
    console = _console()
    net = zoo.pretrained_network(args.model)
    X, Y = load_npz(ensure_dataset(zoo.dataset_of(args.model)), "test")
    for threat in threats:
        try:
            threat.validate(X.shape[1:])
        except ThreatError as e:
            raise ThreatError(f"--threats {threat.spec()}: {e}") from None
    console.print(net.summary())
    methods = [m for m in DEMO_METHODS if m[1] in METHODS]
    console.print(f"\nmethods: {', '.join(m[0] for m in methods)}; first {n} correctly classified test inputs\n")
    picks = [i for i in range(len(Y)) if int(net.predict(X[i])) == int(Y[i])][:n]
    rows = []
    with stdout_to_stderr():
        for threat in threats:
            for i in picks:
                for label, method, opts in methods:
                    res = verify(net, X[i], int(Y[i]), threat, method=method, timeout=timeout, **opts)
                    rows.append({"instance": f"#{i} (y={int(Y[i])})", "threat": threat.spec(), "method": label,
                                 "status": res.status, "margin_lb": res.margin_lb, "time_s": res.time_s,
                                 "details": _details(res.status, res.stats, res.message)})
    console.print(_table(f"stverify demo: {args.model} on generated data", rows))
    by = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r["status"] == "verified")
    console.print("verified per method: " + ", ".join(f"{m} {sum(v)}/{len(v)}" for m, v in by.items()))
    return 0


def _method_options(args) -> dict:
    """The --relaxation / --solver / --bounds given, refused when --method does not take them."""
    from .verify import METHODS, method_options

    if args.method not in METHODS:
        raise InputError(f"--method {args.method!r} is not a method; available: {', '.join(METHODS)}")
    opts = {k: getattr(args, k) for k in METHOD_FLAGS if getattr(args, k) is not None}
    allowed = method_options(args.method)
    if allowed is not None and (extra := [k for k in opts if k not in allowed]):
        takes = [f"--{k}" for k in METHOD_FLAGS if k in allowed]
        raise InputError(f"{', '.join('--' + k for k in extra)} does not apply to --method {args.method} "
                         f"({'it takes ' + ', '.join(takes) if takes else 'it takes none of ' + ', '.join('--' + k for k in METHOD_FLAGS)})")
    return opts


def _rows(res, instance: str, threat: str, method: str) -> list[dict]:
    """Table rows: one for the result, or for ``--method all`` one per method, the skipped ones and the verdict."""
    if method != "all" or "methods" not in res.stats:
        return [{"instance": instance, "threat": threat, "method": method, "status": res.status, "margin_lb": res.margin_lb,
                 "margin_ub": res.margin_ub, "time_s": res.time_s, "details": _details(res.status, res.stats, res.message)}]
    rows = [{"instance": instance, "threat": threat, "method": name, "status": r["status"], "margin_lb": r["margin_lb"],
             "margin_ub": r["margin_ub"], "time_s": r["time_s"], "details": _details(r["status"], r["stats"], r["message"])}
            for name, r in res.stats["methods"].items()]
    rows += [{"instance": instance, "threat": threat, "method": name, "status": "skipped", "margin_lb": None,
              "details": _one_line(why)} for name, why in res.stats["skipped"].items()]
    rows.append({"instance": instance, "threat": threat, "method": "all (verdict)", "status": res.status,
                 "margin_lb": res.margin_lb, "margin_ub": res.margin_ub, "time_s": res.time_s,
                 "details": _one_line(res.message)})
    return rows


VNNLIB_STATES = ("threat", "data", "index", "split", "label", "save_counterexample")  # what a VNN-LIB file states instead


def _verify_vnnlib(args) -> int:
    """A VNN-COMP instance (--model + --vnnlib): the answer in the VNN-COMP result format, to --out or
    stdout; with --json, one JSON object on stdout (the result schema, the VNN-COMP answer, the property).
    A model that an export's manifest records as a --rewrite is replaced by its native Conv3d model."""
    from .interchange.manifest import native_model
    from .interchange.vnnlib import load_vnnlib
    from .stdio import stdout_to_stderr

    if given := [f"--{k.replace('_', '-')}" for k in VNNLIB_STATES if getattr(args, k) is not None]:
        raise InputError(f"{', '.join(given)} cannot be used with --vnnlib: the VNN-LIB file states the input set and "
                         "the property")
    args.method = args.method or "bab"
    timeout = validation.timeout(args.timeout, "--timeout")
    opts = _method_options(args)
    out = None if args.out is None else validation.output_file(args.out, "--out")
    native = native_model(args.model)
    if native is not None:
        print(f"{args.model} is a rewrite of {native} (the export's manifest.json): verifying {native.name}", file=sys.stderr)
    prop = load_vnnlib(args.vnnlib, _model(args.model if native is None else str(native), args.arch))
    with stdout_to_stderr():  # solvers' own output never reaches stdout
        res = prop.verify(method=args.method, timeout=timeout, **opts)
    result, witness, note = prop.answer(res)
    if out is not None:
        out.write_text(format_result(result, witness))
    if args.json:
        doc = res.to_dict()
        doc["counterexample"] = (None if witness is None else "(omitted; use --counterexample)" if not args.counterexample
                                 else witness.x.reshape(prop.network.input_shape).tolist())  # the checked sat witness
        doc.update(instance={"model": args.model, "vnnlib": args.vnnlib, **({"native_model": str(native)} if native else {})},
                   property=prop.stats, vnncomp={"result": result, "note": note})
        print(json.dumps(doc))
    elif out is None:
        sys.stdout.write(format_result(result, witness))
    bound = "" if res.margin_lb is None else f", margin_lb {res.margin_lb:.6g}"
    print(f"{result} ({args.method}: {res.status}{bound}, {res.time_s:.2f} s; {prop.stats['members']} input box(es), "
          f"{prop.stats['reduction']}){': ' + note if note else ''}" + (f" -> {out}" if out else ""), file=sys.stderr)
    return 0


def cmd_verify(args) -> int:
    from . import counterexample
    from .stdio import stdout_to_stderr
    from .verify import verify

    if args.vnnlib:
        return _verify_vnnlib(args)
    if args.threat is None:
        raise InputError("--threat is required (or --vnnlib with a VNN-LIB property)")
    if args.out is not None:
        raise InputError("--out applies to --vnnlib (the VNN-COMP result file); use --json or --save-counterexample")
    args.index, args.split = (0 if args.index is None else args.index), (args.split or "test")
    args.method = args.method or "stbp"
    threat = _threat(args.threat, "--threat")
    timeout = validation.timeout(args.timeout, "--timeout")
    opts = _method_options(args)
    save = None if args.save_counterexample is None else validation.output_file(args.save_counterexample, "--save-counterexample")
    net, data = _model_and_data(args.model, args.arch, args.data)
    split = read_data(args, data, net)
    x, stored = split.sample(args.index)
    y, label = instance_property(args, net, x, stored, f"{str(data)!r} [{args.split} #{args.index}]")
    try:
        threat.validate(x.shape)
    except ThreatError as e:
        raise ThreatError(f"--threat: {e}") from None
    print(f"data: {split.describe()}", file=sys.stderr)
    with stdout_to_stderr():  # solvers' own output never reaches stdout
        res = verify(net, x, y, threat, method=args.method, timeout=timeout, domain=split.domain, **opts)
    instance = {"model": args.model, "data": str(data), "split": args.split, "index": args.index, "label": label,
                "threat": threat.spec(), "layout": split.layout.name, "domain": list(split.domain)}
    if args.property is not None:
        instance["property"] = parse_property(args.property).spec()
    if args.json:
        out = res.to_dict()
        out["instance"] = instance
        if not args.counterexample:
            out["counterexample"] = None if res.counterexample is None else "(omitted; use --counterexample)"
        print(json.dumps(out))
    else:
        _console().print(_table(f"{Path(str(data)).name} [{args.split} #{args.index}]",
                                _rows(res, f"#{args.index} ({_what(args, label)})", threat.spec(), args.method)))
    if save is not None:
        if res.counterexample is None:
            print(f"no counterexample ({res.status}): nothing saved to {save}", file=sys.stderr)
        else:
            counterexample.save(save, x, res.counterexample, y, threat, net, model=args.model, method=args.method,
                                status=res.status, data=str(data), split=args.split, index=args.index,
                                **({} if args.property is None else {"property": instance["property"]}))
            print(f"counterexample saved to {save}; draw it with: stverify render {save}", file=sys.stderr)
    return 0


def _what(args, label) -> str:
    """The instance's property in a table row: y=label, or the property (with its label)."""
    if args.property is None:
        return f"y={label}"
    return parse_property(args.property).spec() + ("" if label is None else f", y={label}")


def cmd_train(args) -> int:
    from .zoo.train import run

    return run(args)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command.  ``command``: the one about to run, when known; the
    arguments of ``train`` (the zoo's model names, which need torch) are then defined for it only,
    so that ``stverify --help`` and the other commands do not import torch to parse."""
    from .complete.big_m import BOUND_SOURCES
    from .encodings.backends import SOLVERS

    p = Parser(prog="stverify", description="Exact and certified verification of 3D CNNs under spatio-temporal threat sets.",
               epilog="Exit codes: 0 done, 1 soundness violations found (report), 2 bad input, 3 internal error (a bug), "
                      "130 interrupted.  --debug (anywhere) prints tracebacks.")
    p.add_argument("--debug", action="store_true", help="print the traceback of any error (for bug reports)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="verify a few generated instances with every method on a shipped model",
                       description="Loads a shipped zoo model and generated data and verifies a handful of instances with every available method.")
    d.add_argument("--model", default=DEMO_MODEL, help=f"zoo model (default {DEMO_MODEL})")
    d.add_argument("-n", type=int, default=DEMO_INSTANCES, help=f"instances per threat (default {DEMO_INSTANCES})")
    d.add_argument("--threats", nargs="+", default=list(DEMO_THREATS), help="threat sets to try")
    d.add_argument("--timeout", type=float, default=30.0, help="seconds per complete verification (default 30)")
    d.set_defaults(func=cmd_demo)

    v = sub.add_parser("verify", help="verify one instance", description="Verify one instance of a dataset (.npz file or name) against a threat set, "
                       "or a VNN-LIB property (--vnnlib), answered in the VNN-COMP result format.")
    add_instance_arguments(v)
    v.add_argument("--threat", help=THREAT_HELP)
    v.add_argument("--vnnlib", metavar="PROP.vnnlib", help="verify this VNN-LIB property instead of --data/--threat; writes the "
                   "VNN-COMP result (sat + witness, unsat, timeout, unknown, error) to --out or stdout")
    v.add_argument("--out", metavar="FILE", help="with --vnnlib: the result file to write")
    v.add_argument("--method", help="stbp (default), box-ibp, box-crown, milp, smt, bab (default with --vnnlib), all")
    v.add_argument("--relaxation", choices=("ibp", "crown-ibp", "crown", "alpha-crown"),
                   help="STBP relaxation (default crown; crown-ibp: IBP intermediate boxes, CROWN on the margins)")
    v.add_argument("--solver", choices=SOLVERS, help="MILP backend for milp, bab, all (default scip)")
    v.add_argument("--bounds", choices=tuple(BOUND_SOURCES), help="big-M source for milp, all (default stbp)")
    v.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole verification (default 60)")
    v.add_argument("--device", help="torch device of the bound computations, e.g. cpu (default) or cuda")
    v.add_argument("--json", action="store_true", help="print the result schema as one JSON object on stdout")
    v.add_argument("--counterexample", action="store_true", help="include the counterexample in --json output")
    v.add_argument("--save-counterexample", metavar="FILE.npz",
                   help="save x0, the counterexample, label, threat and the chosen frames / patch (see `stverify render`)")
    v.set_defaults(func=cmd_verify, index=None, split=None)  # None: not given (refused with --vnnlib); 0 and test

    t = sub.add_parser("train", help="train a zoo model (standard or IBP-certified)",
                       description="Train a zoo model on its generated dataset and write NAME.pt and manifest.json.")
    if command in (None, "train"):
        from .zoo.train import build_parser as train_parser

        train_parser(t)
    t.set_defaults(func=cmd_train)

    for register in _extensions():
        register(sub)
    return p


def _extensions():
    """Sub-commands contributed by other modules: render, bench / report, export / radius, output-range, audit."""
    from . import counterexample, stbench
    from .audit import cli as audit_cli
    from .bench import cli as bench_cli
    from .complete import cli as complete_cli
    from .interchange import cli as interchange_cli

    return [counterexample.register, bench_cli.register, interchange_cli.register, complete_cli.register,
            audit_cli.register, stbench.register]


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """Take ``--debug`` out of the arguments (wherever it is, before a ``--``), so that it works
    with every sub-command, including those that do not declare it."""
    end = argv.index("--") if "--" in argv else len(argv)
    rest = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    return rest, len(rest) != len(argv)


def main(argv=None) -> int:
    """Run the command line; returns the exit code (module docstring)."""
    argv, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    try:
        args = build_parser(next(iter(argv), "")).parse_args(glue_negative_domain(argv))
        return args.func(args)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2); an extension's SystemExit("message")
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(f"error: {_one_line(e.code)}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except InputError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as e:  # a file the user named cannot be read or written, a disk is full, ...
        if debug:
            traceback.print_exc()
        where = f": {e.filename!r}" if getattr(e, "filename", None) else ""
        print(f"error: {_one_line(e.strerror or e)}{where}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as e:  # noqa: BLE001 - anything else is a bug: say so, in one line
        if debug:
            traceback.print_exc()
        print(f"internal error (a bug in stverify; please report it with the output of --debug): "
              f"{type(e).__name__}: {_one_line(e)[:300]}", file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
