"""The ``bench`` and ``report`` sub-commands (registered by ``stverify.cli``)."""
from __future__ import annotations

from rich.console import Console


def cmd_bench(args) -> int:
    from .config import load_config
    from .runner import run_bench

    console = Console(stderr=True, soft_wrap=True)
    try:
        run_bench(load_config(args.config, args.data), args.out, args.workers, args.dask, args.resume, console)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted: finished results are in {args.out}/results.jsonl; "
                      f"continue with: stverify bench {args.config} --out {args.out} --resume[/]")
        return 130
    console.print(f"tables and figures: stverify report {args.out}")
    return 0


def cmd_report(args) -> int:
    from .imported import parse_import
    from .report import write_report

    console = Console(stderr=True, soft_wrap=True)
    found = write_report(args.dir, [parse_import(i) for i in args.imports], args.manifest)
    for src in found["imports"]:
        console.print(f"imported {src['name']}: {src['rows']} rows of {src['results']}, {src['instances']} instances "
                      f"(manifest {src['manifest']}; {src['unmatched']} rows match no exported file)", highlight=False)
    console.print(f"{found['records']} results, {found['instances']} instances -> {args.dir}/report.md, summary.csv, "
                  f"methods.csv, figures/ ({', '.join(p.name for p in found['figures'])})")
    for w in found["boundary"]:
        console.print(f"[yellow]boundary witness (not a violation): {w['method']} on {w['model']} {w['split']}#{w['index']} "
                      f"{w['threat']}: float64 margin {w['margin_float64']:.3g}, float32 {w['margin_float32']:.3g}, "
                      f"tolerance {w['tol']:.2g}[/]", highlight=False)
    bad = found["violations"]
    if bad:
        console.print(f"[bold white on red] SOUNDNESS VIOLATIONS: {len(bad)} [/]")
        for v in bad:
            console.print(f"[red]{v['model']} {v['split']}#{v['index']} {v['threat']}: {v['why']}[/]", highlight=False)
        return 1
    console.print("[green]soundness: 0 violations[/]")
    return 0


def register(sub) -> None:
    b = sub.add_parser("bench", help="run a benchmark config (resumable; local workers or a dask cluster)",
                       description="Run every instance (model x input x threat x method) of a TOML config, each in its own "
                                   "process killed at timeout + grace; results go to OUT/results.jsonl as they finish.")
    b.add_argument("config", help="benchmark TOML (see stverify.bench.config)")
    b.add_argument("--out", required=True, help="output directory")
    b.add_argument("--workers", type=int, default=1, help="instances run at once on this machine (default 1)")
    b.add_argument("--dask", metavar="ADDRESS", help="run on an existing dask.distributed scheduler, e.g. tcp://host:8786")
    b.add_argument("--resume", action="store_true", help="continue a run in OUT, skipping finished instances")
    b.add_argument("--data", metavar="NPZ",
                   help="MedMNIST-format .npz replacing the data of every model whose input shape matches")
    b.set_defaults(func=cmd_bench)
    r = sub.add_parser("report", help="tables and figures of a benchmark run",
                       description="Write DIR/report.md, summary.csv, methods.csv, violations.csv and DIR/figures/*.png; "
                                   "exit status 1 if there are soundness violations (a contradiction across methods and "
                                   "imported tools, a counterexample or witness that does not replay).")
    r.add_argument("dir", help="the --out directory of a bench run")
    r.add_argument("--import", dest="imports", action="append", default=[], metavar="NAME=results.csv",
                   help="another tool's VNN-COMP results CSV on files of `stverify export` (repeatable): its verdicts "
                        "join every table, the cactus plot and the soundness check under NAME")
    r.add_argument("--manifest", help="the export's manifest.json that maps the CSVs' VNN-LIB files to instances "
                                      "(default: the manifest.json beside each results CSV)")
    r.set_defaults(func=cmd_report)
