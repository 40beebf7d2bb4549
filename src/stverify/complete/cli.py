"""``stverify output-range``: the exact min and max of one output over a threat set (``output_range``),
its bounds printed after every round (anytime)."""
from __future__ import annotations

import json
import sys

from .. import validation
from ..errors import InputError
from ..instance_args import add_instance_arguments, read_data


def cmd_output_range(args) -> int:
    from ..interchange.export import model_spec
    from ..threats import parse_threat
    from .output_range import output_range

    timeout = validation.timeout(args.timeout, "--timeout")
    validation.number(args.tol, "--tol", positive=True)
    if args.property is not None or args.label is not None:
        raise InputError("output-range bounds one output (--output), not a property or a label")
    spec = model_spec(args.model, args.arch, args.data)
    net = spec.load()
    split = read_data(args, spec.dataset(), net)
    x, _ = split.sample(args.index)
    if not 0 <= args.output < net.n_classes:
        raise InputError(f"--output {args.output} is not an output of the model: expected 0..{net.n_classes - 1}")
    threat = parse_threat(args.threat)
    try:
        threat.validate(x.shape)
    except InputError as e:
        raise InputError(f"--threat: {e}") from None

    def progress(r):
        print(f"{r.time_s:7.2f} s  min f_{r.output} in [{r.lo:.8g}, {r.lo_attained:.8g}]   max f_{r.output} in "
              f"[{r.hi_attained:.8g}, {r.hi:.8g}]", file=sys.stderr)

    print(f"{spec.name} {args.split} #{args.index}, output {args.output} = {float(net.forward(x)[args.output]):.8g} at x0, "
          f"{threat.spec()}", file=sys.stderr)
    res = output_range(net, x, threat, args.output, timeout, args.tol, split.domain, args.solver, progress)
    if args.json:
        print(json.dumps({"model": spec.name, "data": str(spec.dataset()), "split": args.split, "index": args.index,
                          "threat": threat.spec(), "output": res.output, "value_x0": float(net.forward(x)[args.output]),
                          "lo": res.lo, "lo_attained": res.lo_attained, "hi_attained": res.hi_attained, "hi": res.hi,
                          "exact": res.exact, "tol": res.tol, "time_s": res.time_s, "history": res.history}))
    else:
        print(res.describe() + f", {res.time_s:.2f} s")
    return 0


def register(sub) -> None:
    o = sub.add_parser("output-range", help="exact min and max of one output over a threat set (regression worst case)",
                       description="The exact minimum and maximum of one output (e.g. a steering angle) over the threat "
                                   "set, by the MILP in rounds of doubling time: sound bounds and values attained at "
                                   "points of the set after every round (anytime), until both agree to --tol.")
    add_instance_arguments(o)
    o.add_argument("--threat", required=True, help="threat set, e.g. anyframes:k=1,eps=2/255")
    o.add_argument("--output", type=int, default=0, help="the output to bound (default 0)")
    o.add_argument("--tol", type=float, default=1e-4, help="stop when both gaps are <= tol (default 1e-4)")
    o.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60); the bounds so far are printed")
    o.add_argument("--solver", default="scip", help="MILP backend: scip (default), highs, gurobi")
    o.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    o.set_defaults(func=cmd_output_range)
