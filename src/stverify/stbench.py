"""ST-Bench: a VNN-COMP benchmark over the STBP paper's three domains, and its headline table.

    stverify stbench --out DIR --seed S [--n N] [--split-members] [--run [--workers W]]

Domains (``DOMAINS``): driving (the ``steering`` model on ``driving`` clips, a regression: the
property is a band ``deviation:delta=...`` around the clean steering output), action recognition
(the ``action`` model on ``action`` clips: the label stays the argmax) and medical volumes (the
``medmnist`` model on ``volume``: the label).  Per domain: N test inputs drawn with the seed (for a
classifier, misclassified ones included: certified robust accuracy counts them as failures), the
threat kinds ``KINDS`` (frames, anyframes, patch, anypatch, linf: ``bench.config.default_threat``, or
the domain's ``specs`` where its default union has too many member boxes for one VNN-LIB file) at
the domain's budgets ``eps``, chosen where the methods separate (some instances certified by STBP,
some only by the complete methods, some falsified).  Sized so that ``--run --workers 1`` fits in 40
minutes on a shared 2-core machine (N = 10: 28 minutes measured, most of it the medical domain; README).

DIR holds ``onnx/``, ``vnnlib/`` (a union threat as one disjunctive file, or one file per member
box with ``--split-members``), ``instances.csv`` (onnx, vnnlib, the domain's timeout),
``manifest.json`` (the stverify instance behind every file), ``configs/<domain>.toml`` (the same
instances as ``stverify bench`` configs, with the methods of the headline table),
``generate_properties.py`` (VNN-COMP's regeneration script: ``python generate_properties.py SEED``)
and a README.  ``--run`` then runs every method on every instance (``stverify bench`` per domain,
into ``DIR/results/<domain>``) and writes the headline table ``DIR/results/headline.md`` (certified
fraction per method, domain, threat and budget; the exact robust accuracy where the complete methods
decide: its lower bound counts instances a complete method verified, its upper bound excludes
those with a replayed counterexample) and ``DIR/results/headline.png``.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

KINDS = ("frames", "anyframes", "patch", "anypatch", "linf")
METHODS = (("box-ibp", "box-ibp", {}), ("box-crown", "box-crown", {}), ("stbp-crown", "stbp", {}),
           ("stbp-alpha", "stbp", {"relaxation": "alpha-crown"}), ("milp", "milp", {}), ("bab", "bab", {}))
COMPLETE = ("milp", "bab")


@dataclass(frozen=True)
class Domain:
    name: str
    model: str  # a zoo model with shipped weights
    prop: str | None  # an output property; None: the label's robustness
    eps: tuple[str, ...]  # budgets
    timeout: float  # seconds per instance, in instances.csv and for stverify's run
    specs: tuple[tuple[str, str], ...] = ()  # (kind, threat template with {eps}) in place of the kind's default set

    def threats(self) -> list[tuple[str, str]]:
        """(kind, template or "" for ``bench.config.default_threat``) for every kind of ``KINDS``."""
        given = dict(self.specs)
        return [(kind, given.get(kind, "")) for kind in KINDS]


# The default anypatch places its patch at every pixel of every window: 507 to 10,648 member boxes on
# these inputs, tens of MB per disjunctive VNN-LIB file or over its limit (``vnnlib.write.MAX_BOUNDS``).
# ST-Bench's patches sit on a stride inside central frames, and on the 28^3 volumes anyframes is any one
# of the 8 central slices (all 28 would be 1.2M bounds per file): 8 to 32 member boxes, files of at most
# 5.2 MB (1.7 MB off the volumes).
DOMAINS = (
    Domain("driving", "steering", "deviation:delta=0.1", ("4/255", "8/255", "16/255"), 30.0,
           (("anypatch", "anypatch:eps={eps},len=2,h=4,w=4,stride=4,area=2-4-0-16-0-16"),)),
    Domain("action", "action", None, ("8/255", "32/255", "128/255"), 30.0,
           (("anypatch", "anypatch:eps={eps},len=2,h=4,w=4,stride=4,area=3-6-0-16-0-16"),)),
    Domain("medical", "medmnist", None, ("8/255", "32/255", "64/255"), 20.0,
           (("anyframes", "anypatch:eps={eps},len=1,h=28,w=28,area=10-18-0-28-0-28"),
            ("anypatch", "anypatch:eps={eps},len=4,h=7,w=7,stride=7,area=12-16-0-28-0-28"))),
)


def config_text(d: Domain, seed: int, n: int) -> str:
    """The ``stverify bench`` config of one domain's instances and the headline table's methods."""
    lines = [f"# ST-Bench, {d.name} domain, seed {seed} (written by stverify stbench)", f"timeout = {d.timeout:g}",
             "grace = 10", "threads = 1", "", "[[models]]", f'name = "{d.model}"']
    if d.prop is not None:
        lines.append(f'property = "{d.prop}"')
    lines += ["", "[samples]", 'split = "test"', f"n = {n}", 'select = "random"', f"seed = {seed}", ""]
    eps = ", ".join(f'"{e}"' for e in d.eps)
    for kind, spec in d.threats():
        lines += ["[[threats]]", f'kind = "{kind}"'] + ([f'spec = "{spec}"'] if spec else []) + [f"eps = [{eps}]", ""]
    for name, method, options in METHODS:
        opts = ", ".join(f'{k} = "{v}"' for k, v in options.items())
        lines += ["[[methods]]", f'name = "{name}"', f'method = "{method}"', f"options = {{ {opts} }}", ""]
    return "\n".join(lines)


GENERATE = '''"""VNN-COMP property generation for ST-Bench: ``python generate_properties.py SEED`` rewrites this
folder's onnx/, vnnlib/, instances.csv and manifest.json for the seed (needs stverify installed:
``pip install stverify`` from its repository; nothing is downloaded)."""
import sys
from pathlib import Path

from stverify.stbench import regenerate

if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: python generate_properties.py SEED")
    regenerate(Path(__file__).resolve().parent, int(sys.argv[1]))
'''


def _readme(seed: int, n: int, exported, split_members: bool) -> str:
    rows = ["| domain | model | property | threats | budgets | inputs | files | timeout (s) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for d in DOMAINS:
        files = sum(e.model == d.model for e in exported)
        threats = ", ".join(f"{k} (`{spec}`)" if spec else k for k, spec in d.threats())
        rows.append(f"| {d.name} | `{d.model}` | {d.prop or 'the label stays the argmax'} | {threats} | "
                    f"{', '.join(d.eps)} | {n} | {files} | {d.timeout:g} |")
    return "\n".join([
        f"# ST-Bench (seed {seed})", "",
        "Spatio-temporal robustness of 3D CNNs in three domains: driving (steering regression), action recognition "
        "and medical volumes, written by `stverify stbench`. The inputs are drawn with the seed from each dataset's "
        "test split; every threat of a domain at every budget is one instance.", "",
        *rows, "",
        "Union threats (anyframes, anypatch) are " + ("one VNN-LIB file per member box (`--split-members`): the "
        "instance holds iff every member file is `unsat`." if split_members else "one disjunctive VNN-LIB file per "
        "instance (one `(or ...)` of member boxes); `--split-members` writes one file per member box instead, which "
        "Marabou prefers."), "",
        "* `instances.csv`: onnx, vnnlib, timeout per instance; `manifest.json`: the stverify instance behind every file;",
        "* `configs/*.toml`: the same instances as `stverify bench` configs (`stverify stbench --out DIR --seed S --run` "
        "runs them and writes `results/headline.md`);",
        f"* `generate_properties.py SEED`: regenerates the instances for another seed (`python generate_properties.py {seed}` "
        "reproduces these).", ""])


def _build(out: Path, seed: int, n: int, split_members: bool, log) -> None:
    from .interchange.export import export, items_from_config, written_whole

    with written_whole(out) as tmp:
        (tmp / "configs").mkdir()
        items, nets, timeouts = [], {}, {}
        for d in DOMAINS:
            path = tmp / "configs" / f"{d.name}.toml"
            path.write_text(config_text(d, seed, n))
            it, ns, _ = items_from_config(path)
            items += it
            nets.update(ns)
            timeouts[d.model] = d.timeout
        exported = export(items, nets, tmp / "export", timeouts, split_members=split_members, log=log)
        for p in (tmp / "export").iterdir():
            p.rename(tmp / p.name)
        (tmp / "export").rmdir()
        (tmp / "generate_properties.py").write_text(GENERATE)
        (tmp / "stbench.json").write_text(json.dumps({"seed": seed, "n": n, "split_members": split_members}) + "\n")
        (tmp / "README.md").write_text(_readme(seed, n, exported, split_members) + "\n" + (tmp / "README.md").read_text())


def write(out, seed: int = 0, n: int = 10, split_members: bool = False, log=print) -> Path:
    """Write the benchmark folder ``out`` (module docstring), whole or not at all."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"--seed must be an integer >= 0, got {seed!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"--n must be an integer >= 1, got {n!r}")
    out = Path(out)
    _build(out, seed, n, split_members, log)
    return out


def regenerate(folder: Path, seed: int) -> None:
    """``generate_properties.py``: rewrite ``folder``'s instances for ``seed`` (the same n and file layout)."""
    meta = json.loads((folder / "stbench.json").read_text())
    n, split_members = meta["n"], meta["split_members"]
    fresh = folder.parent / f".{folder.name}.seed{seed}"
    write(fresh, seed, n, split_members, log=lambda *_: None)
    for name in ("onnx", "vnnlib", "configs"):
        shutil.rmtree(folder / name, ignore_errors=True)
        (fresh / name).rename(folder / name)
    for name in ("instances.csv", "manifest.json", "README.md", "stbench.json"):
        (fresh / name).replace(folder / name)
    shutil.rmtree(fresh)


# --- the headline table --------------------------------------------------------------------
def run(out, workers: int = 2, log=print) -> Path:
    """Run every domain's config (``stverify bench``), its report, and the headline table."""
    from .bench import load_config, read_results, run_bench, write_report

    out = Path(out)
    start = time.perf_counter()
    records = []
    for d in DOMAINS:
        res = out / "results" / d.name
        run_bench(load_config(out / "configs" / f"{d.name}.toml"), res, workers=workers, resume=res.exists())
        write_report(res)
        records += [dict(r, domain=d.name) for r in read_results(res / "results.jsonl")]
    return headline(records, out / "results", time.perf_counter() - start)


def _cells(records):
    """{(domain, kind, eps): {method: [statuses]}} in DOMAINS / KINDS / budget order."""
    cells: dict = {}
    for r in records:
        cells.setdefault((r["domain"], r["kind"], r["eps"]), {}).setdefault(r["method"], {})[r["index"]] = r["status"]
    order = {(d.name, k, e): i for i, (d, k, e) in enumerate((d, k, e) for d in DOMAINS for k in KINDS for e in d.eps)}
    return dict(sorted(cells.items(), key=lambda kv: order.get(kv[0], len(order))))


def headline(records, folder: Path, run_s: float) -> Path:
    """results/headline.md and headline.png from the results of every domain (module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    methods = [m for m, _, _ in METHODS]
    head = ["domain", "threat", "eps", "n"] + methods + ["exact robust acc"]
    rows, series = [], {}
    for (dom, kind, eps), by in _cells(records).items():
        n = max(len(v) for v in by.values())
        frac = {m: sum(s == "verified" for s in by.get(m, {}).values()) / n for m in methods}
        idx = set().union(*(by.get(m, {}).keys() for m in COMPLETE))
        proved = sum(any(by.get(m, {}).get(i) == "verified" for m in COMPLETE) for i in idx)
        broken = sum(any(by.get(m, {}).get(i) == "falsified" for m in COMPLETE) for i in idx)
        lo, hi = proved / n, (n - broken) / n
        exact = f"{lo:.2f}" if proved + broken == n else f"{lo:.2f}-{hi:.2f}"
        rows.append([dom, kind, eps, str(n)] + [f"{frac[m]:.2f}" for m in methods] + [exact])
        series.setdefault((dom, kind), []).append((eps, frac, lo, hi))
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    text = ["# ST-Bench headline table", "",
            f"Certified fraction per method (verified instances / inputs: certified robust accuracy for the classifiers, "
            f"the share of clips whose steering provably stays in its band for driving) and the exact robust accuracy "
            f"from the complete methods ({', '.join(COMPLETE)}; a range where they left instances undecided). Whole run: "
            f"{run_s / 60:.1f} min.", "", *table, ""]
    path = folder / "headline.md"
    path.write_text("\n".join(text))
    _figure(series, methods, folder / "headline.png")
    return path


def _figure(series: dict, methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doms = [d.name for d in DOMAINS if any(k[0] == d.name for k in series)]
    fig, axes = plt.subplots(len(doms), len(KINDS), figsize=(3 * len(KINDS), 2.6 * len(doms)), squeeze=False, sharey=True)
    for r, dom in enumerate(doms):
        for c, kind in enumerate(KINDS):
            ax = axes[r][c]
            pts = series.get((dom, kind), [])
            xs = [p[0] for p in pts]
            for m in methods:
                ax.plot(xs, [p[1][m] for p in pts], marker="o", label=m)
            ax.fill_between(xs, [p[2] for p in pts], [p[3] for p in pts], color="k", alpha=0.15, label="exact robust acc")
            ax.set_title(f"{dom}: {kind}", fontsize=9)
            ax.set_ylim(-0.02, 1.02)
            if c == 0:
                ax.set_ylabel("certified fraction")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=len(methods) + 1, fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))  # the legend below the panels, over no curve
    fig.savefig(path, dpi=110)
    plt.close(fig)


def register(sub) -> None:
    s = sub.add_parser("stbench", help="write ST-Bench (a VNN-COMP benchmark over driving, action and medical models)",
                       description="Write the ST-Bench folder (ONNX, VNN-LIB, instances.csv, manifest, bench configs, "
                                   "generate_properties.py) for a seed; with --run, run every method and write the "
                                   "headline table.")
    s.add_argument("--out", required=True, help="output folder (new or empty)")
    s.add_argument("--seed", type=int, default=0, help="the inputs drawn (default 0)")
    s.add_argument("--n", type=int, default=10, help="inputs per domain (default 10)")
    s.add_argument("--split-members", action="store_true", help="one VNN-LIB file per member box of a union threat")
    s.add_argument("--run", action="store_true", help="also run every method and write results/headline.md")
    s.add_argument("--workers", type=int, default=2, help="with --run: parallel instance processes (default 2)")
    s.set_defaults(func=_cmd)


def _cmd(args) -> int:
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    out = Path(args.out)
    if not (args.run and (out / "configs").is_dir()):  # --run on an existing benchmark resumes its run
        write(out, args.seed, args.n, args.split_members, log=console.print)
        console.print(f"ST-Bench written to {out}")
    if args.run:
        console.print(f"headline table: {run(out, args.workers)}")
    return 0
