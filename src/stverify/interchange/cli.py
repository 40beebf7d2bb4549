"""The ``export`` and ``radius`` sub-commands (registered by ``stverify.cli``)."""
from __future__ import annotations

import json

import numpy as np
from rich.console import Console

from .. import counterexample, validation
from ..errors import InputError
from ..instance_args import add_instance_arguments, domain_option, instance_property, read_data
from ..properties import parse_property
from ..threats import DEFAULT_DOMAIN, EXAMPLES, format_eps, parse_eps

DEFAULT_TIMEOUT = 60.0


def _console() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def cmd_export(args) -> int:
    from .export import export, items_from_args, items_from_config, model_spec

    if args.config and (args.model or args.threat):
        raise InputError("give a bench CONFIG.toml or --model / --threat, not both")
    domain = domain_option(args.domain)
    if args.config and (domain is not None or args.layout):
        raise InputError("--domain and --layout apply to --model instances; a bench config's data is read as it states")
    if args.config:
        items, nets, timeout = items_from_config(args.config, args.data)
    elif args.model and args.threat:
        items, nets = items_from_args(model_spec(args.model, args.arch, args.data), args.split, args.index, args.threat,
                                      args.label, args.layout, domain, args.property)
        timeout = DEFAULT_TIMEOUT
    else:
        raise InputError("give a bench CONFIG.toml, or --model and --threat (with --index)")
    export(items, nets, args.out, args.timeout or timeout, args.rewrite, args.split_members, log=_console().print,
           domain=domain or DEFAULT_DOMAIN)
    return 0


def free_eps(text: str) -> str:
    """A threat spec with eps optional (``anyframes:k=1``): eps=0 added where missing."""
    kind, _, body = text.partition(":")
    if "eps" in {item.partition("=")[0].strip() for item in body.split(",")}:
        return text
    return f"{kind}:{body.strip().rstrip(',') + ',' if body.strip() else ''}eps=0"


def _eps_text(eps: float) -> str:
    return f"{eps:.6g} (= {eps * 255:.4g}/255)"


def describe_counterexample(net, x, y, threat, upper, cex, domain) -> dict:
    """Where the counterexample at the bracket's top moves the input, and its replayed margins."""
    from ..replay import replay
    from ..tolerances import MEMBERSHIP_TOL

    changed = np.any(np.abs(cex - x) > MEMBERSHIP_TOL, axis=0)
    rep = replay(net, x, y, threat.with_eps(upper), cex, domain)
    return {"voxels_changed": int(changed.sum()), "frames_changed": np.flatnonzero(changed.any(axis=(1, 2))).tolist(),
            "max_abs_change": float(np.max(np.abs(cex - x))), "predicted": int(net.predict(cex)),
            "replays": rep.ok, "margin_float64": rep.margin64, "margin_float32": rep.margin32}


def cmd_radius(args) -> int:
    from ..complete.radius import max_safe_radius
    from ..threats import parse_threat
    from .export import model_spec

    timeout = validation.timeout(args.timeout, "--timeout")
    validation.number(args.tol, "--tol", positive=True)
    validation.number(args.eps_max, "--eps-max", positive=True)
    save = None if args.save_counterexample is None else validation.output_file(args.save_counterexample,
                                                                                  "--save-counterexample")
    spec = model_spec(args.model, args.arch, args.data)
    net = spec.load()
    split = read_data(args, spec.dataset(), net)
    x, stored = split.sample(args.index)
    y, label = instance_property(args, net, x, stored, f"{str(spec.dataset())!r} [{args.split} #{args.index}]")
    what = f"label {label}" if args.property is None else parse_property(args.property).spec()
    threat = parse_threat(free_eps(args.threat))
    try:
        threat.validate(x.shape)
    except InputError as e:
        raise InputError(f"--threat: {e}") from None
    res = max_safe_radius(net, x, y, threat, tol=args.tol, eps_max=args.eps_max, timeout=timeout,
                          complete=args.complete, solver=args.solver, domain=split.domain)
    family = threat.spec().replace(f"eps={format_eps(threat.eps)}", "eps=*")
    info = None if res.counterexample is None else describe_counterexample(net, x, y, threat, res.upper, res.counterexample,
                                                                          split.domain)
    if save is not None and res.counterexample is not None:
        counterexample.save(save, x, res.counterexample, y, threat.with_eps(res.upper), net, model=spec.name,
                            method=f"radius ({args.complete})", data=str(spec.dataset()), split=args.split,
                            index=args.index, **({} if args.property is None else {"property": what}))
        _console().print(f"counterexample saved to {save}; draw it with: stverify render {save}")
    elif save is not None:
        _console().print(f"no counterexample up to eps_max: nothing saved to {save}")
    if args.json:
        out = {"model": spec.name, "data": str(spec.dataset()), "split": args.split, "index": args.index, "label": label,
               **({} if args.property is None else {"property": what}),
               "threat": family, "lower": res.lower, "upper": res.upper, "exact": res.exact, "tol": res.tol,
               "eps_max": args.eps_max, "time_s": res.time_s, "history": res.history, "counterexample_info": info,
               "counterexample": None if res.counterexample is None else
               res.counterexample.tolist() if args.counterexample else "(omitted; use --counterexample)"}
        print(json.dumps(out))
        return 0
    c = _console()
    c.print(f"{spec.name} {args.split} #{args.index} ({what}), {family}, tol {res.tol:g}, eps_max {args.eps_max:g}")
    c.print(f"max safe radius in [{res.lower:.6g}, {res.upper:.6g}]: "
            + (f"exact to {res.tol:g}" if res.exact else f"gap {res.upper - res.lower:.3g} > tol at the timeout")
            + f", {res.time_s:.2f} s")
    last = {}
    for h in res.history:
        last.setdefault(("lower", h["lower"]), h["by"])
        last.setdefault(("upper", h["upper"]), h["by"])
    c.print(f"  robust for every eps <= {_eps_text(res.lower)}   (by {last[('lower', res.lower)]})")
    if info is None:
        c.print(f"  no counterexample up to eps_max = {args.eps_max:g}")
    else:
        c.print(f"  a counterexample at eps  = {_eps_text(res.upper)}   (by {last[('upper', res.upper)]})")
        c.print(f"counterexample at the upper end: {info['voxels_changed']} voxels changed in frame(s) "
                f"{', '.join(map(str, info['frames_changed']))}, max |x - x0| = {info['max_abs_change']:.6g}; "
                f"{'class ' + str(info['predicted']) + ' wins' if args.property is None else 'violated'} "
                f"(margin float64 {info['margin_float64']:.4g}, float32 {info['margin_float32']:.4g}, "
                f"replays: {'yes' if info['replays'] else 'NO'})")
    c.print("trace (s, by, bracket):\n" + "\n".join(f"  {h['t']:7.2f}  {h['by']:<12} [{h['lower']:.6g}, {h['upper']:.6g}]"
                                                    for h in res.history))
    return 0


def register(sub) -> None:
    from .manifest import TOOLS_NOTE

    e = sub.add_parser("export", help="write stverify instances as a VNN-COMP benchmark (ONNX, VNN-LIB, instances.csv)",
                       description="Write OUT/onnx/*.onnx, OUT/vnnlib/*.vnnlib (one per instance; a union threat is one "
                                   "disjunctive file), OUT/instances.csv (onnx,vnnlib,timeout), OUT/manifest.json (the "
                                   "stverify instance behind every file) and OUT/README.md, from --model/--index/--threat or "
                                   "a bench config. OUT must be new or empty; it is written whole or not at all.",
                       epilog="Which tools: " + TOOLS_NOTE)
    e.add_argument("config", nargs="?", help="a bench TOML config: export its instances (its methods aside)")
    e.add_argument("--out", required=True, help="output folder")
    add_instance_arguments(e, model_required=False, many=True,
                           data_help="an .npz file or a dataset name (default: the zoo model's dataset); "
                                 "with a config: replaces the data of the models whose input shape matches")
    e.add_argument("--threat", action="append", help="threat set (repeatable), e.g. " + EXAMPLES["anyframes"])
    e.add_argument("--timeout", type=float, help=f"seconds per instance in instances.csv (default: the config's, "
                                                 f"else {DEFAULT_TIMEOUT:g})")
    e.add_argument("--rewrite", choices=("conv2d", "gemm"), help="also write an equivalent ONNX without Conv3d "
                   "(Conv2d over channel x frame planes, or dense Gemm layers) and list it in instances.csv; manifest.json "
                   "records its native model, which stverify verifies in its place")
    e.add_argument("--split-members", action="store_true", help="one VNN-LIB file per member box of a union threat "
                   "instead of one disjunctive file: use it for Marabou, far slower on the disjunctive files (alpha-beta-CROWN "
                   "prefers them)")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("radius", help="maximum safe eps of one instance for a threat kind",
                       description="Bracket the largest eps for which the instance stays robust under the threat "
                                   "(its eps is free): STBP and attacks, then the eps-MILP or bisection with a complete "
                                   "method; prints the bracket and the counterexample at its upper end.")
    add_instance_arguments(r)
    r.add_argument("--threat", required=True, help="threat kind and its keys, eps left out (ignored if given), e.g. "
                   "anyframes:k=1, linf, anypatch:len=2,h=3,w=3")
    r.add_argument("--tol", type=parse_eps, default=1e-4, help="stop when upper - lower <= tol (default 1e-4)")
    r.add_argument("--eps-max", type=parse_eps, default=1.0, help="search eps in [0, eps_max] (default 1)")
    r.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60); the bracket so far is printed")
    r.add_argument("--complete", choices=("auto", "eps-milp", "milp", "bab"), default="auto",
                   help="exact stage: eps as a MILP variable, or bisection with milp / bab (default auto)")
    r.add_argument("--solver", default="scip", help="MILP backend: scip (default), highs, gurobi")
    r.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    r.add_argument("--counterexample", action="store_true", help="include the counterexample in --json output")
    r.add_argument("--save-counterexample", metavar="FILE.npz", help="save the counterexample at the upper end (x0, x', "
                   "label, the threat at that eps, the member; draw it with `stverify render`)")
    r.set_defaults(func=cmd_radius)
