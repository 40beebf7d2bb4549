"""The ``audit`` sub-command (registered by ``stverify.cli``)."""
from __future__ import annotations

from rich.console import Console

from ..errors import InputError


def _pairs(items, flag: str) -> dict:
    out = {}
    for item in items or ():
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"{flag} {item!r}: expected TOOL=FILE")
        out[name] = path
    return out


def cmd_audit(args) -> int:
    from .audit import audit
    from .report import write_report

    console = Console(stderr=True, soft_wrap=True)
    if args.report_only:
        if given := [flag for flag, v in (("a config", args.config), ("--bounds", args.bounds), ("--results", args.results),
                                          ("--manifest", args.manifest)) if v]:
            raise InputError(f"--report-only rewrites the report from the claims OUT/sources.json names; {', '.join(given)} "
                             "would be ignored (audit more claims with --resume)")
        found = write_report(args.out)
    else:
        try:
            found = audit(args.config, args.out, bounds_files=_pairs(args.bounds, "--bounds"),
                          results=_pairs(args.results, "--results"), manifest=args.manifest, workers=args.workers,
                          resume=args.resume, console=console)
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted: finished instances are in {args.out}/results.jsonl; continue with "
                          "--resume[/]")
            return 130
    for note in found["notes"]:
        console.print(f"[yellow]note: {note}[/]", highlight=False)
    console.print(f"{found['records']} instances -> {args.out}/report.md, unsound.csv, tightness.csv, verdicts.csv, "
                  "confusion.csv, accuracy.csv, cost.csv, figures/", highlight=False)
    bad = found["unsound"]
    if not bad:
        console.print("[green]unsound claims: 0[/]")
        return 0
    console.print(f"[bold white on red] UNSOUND CLAIMS: {len(bad)} [/]")
    for u in bad[:20]:
        where = "" if u["layer"] == "" else f" layer {u['layer']} neuron {u['neuron']}"
        console.print(f"[red]{u['source']}: {u['model']} {u['split']}#{u['index']} {u['threat']}: {u['what']}{where}: "
                      f"{u['why']}[/]", highlight=False)
    return 1


def register(sub) -> None:
    a = sub.add_parser("audit", help="check claimed bounds and verdicts (ours or another tool's) against exact answers",
                       description="Compute exact neuron bounds and exact verdicts on the instances of a bench config "
                                   "(or of an export manifest) and compare them with the claims of stverify's incomplete "
                                   "methods (the config's [[methods]]), of another tool's bounds file (--bounds) and of "
                                   "another tool's VNN-COMP results (--results with --manifest). Writes OUT/report.md, "
                                   "CSV tables and figures; exit status 1 if any claim is unsound.")
    a.add_argument("config", nargs="?", help="bench TOML config, optionally with an [audit] table (stverify.audit.audit)")
    a.add_argument("--out", required=True, help="output directory")
    a.add_argument("--bounds", action="append", metavar="TOOL=FILE",
                   help="another tool's per-neuron bounds, JSON or npz (format: stverify.audit.claims); repeatable")
    a.add_argument("--results", action="append", metavar="TOOL=CSV",
                   help="another tool's VNN-COMP results CSV on files stverify export wrote; repeatable")
    a.add_argument("--manifest", metavar="DIR", help="the stverify export (its manifest.json) that --results refer to")
    a.add_argument("--workers", type=int, default=1, help="processes solving the exact-bound MILPs (default 1)")
    a.add_argument("--resume", action="store_true", help="continue an audit in OUT, skipping finished instances")
    a.add_argument("--report-only", action="store_true", help="only rewrite the report of OUT from its results")
    a.set_defaults(func=cmd_audit)
