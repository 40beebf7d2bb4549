"""The audit report: unsound claims, tightness per layer, verdicts vs exact, and the cost of exactness.

Bound claims, per neuron n of an audited layer input (exact min in [lo, lo_att], max in [hi_att, hi],
``exact_bounds``), with tol = ``tol * max(1, |value|)``:
  * **unsound**: claimed lower > lo_att + tol, or claimed upper < hi_att - tol.  The exact value is
    attained by a point of the set, so such a claim is wrong by more than the tolerance;
  * **undecided**: not unsound, but above the sound exact bound lo (or below hi) where a time limit
    left the exact bound open (status ``bound``);
  * **gap** (neurons with status ``exact``): how far a sound claim lies outside the exact
    interval: max(0, lo - claimed lower), max(0, claimed upper - hi) (the interval [lo, lo_att] is
    at most 2 solver margins wide); **tight** when the gap is within tol.
Unstable ReLU inputs: claimed lower < 0 < claimed upper, against exactly unstable (lo_att < 0 < hi_att).
Verdicts: a claimed ``verified`` where the exact method found a counterexample is unsound; so is another
tool's ``falsified`` whose witness is wrong (``interchange.witness``: outside the set, or not
misclassified beyond the boundary tolerance), or whose boundary witness the exact answer rules out
(a proven margin above it), or, without a witness, where the exact method proved ``verified``.  A
boundary witness (within ``tolerances.WITNESS_TOL_REL`` of the decision boundary in float64 and
float32) is reported in the notes and in verdicts.csv (``witness``), not as unsound.
"""
from __future__ import annotations

import csv
import statistics
from collections import Counter
from pathlib import Path

import numpy as np

from ..bench.config import ModelSpec
from ..data import data_path
from ..bench.report import _md
from ..bench.store import read_results
from ..data import load_sample
from ..errors import InputError
from ..interchange.witness import check_witness
from ..result import STATUSES
from ..threats import KINDS, parse_eps, parse_threat
from .claims import Key, load_external
from .sources import read_sources

EXACT_CLASSES = ("verified", "falsified", "undecided")
UNSOUND_FIELDS = ("model", "split", "index", "threat", "source", "what", "layer", "neuron", "claimed", "exact", "excess", "why")


def _arr(v) -> np.ndarray:
    return np.asarray(v, dtype=object).astype(np.float64) if len(v) else np.zeros(0)


class Context:
    """Networks, inputs and external claims of the records of one audit directory."""

    def __init__(self, out: Path, records: list[dict]):
        self.out = Path(out)
        self.specs = {Key.of(r): ModelSpec(r["model"], r["model_file"], r["arch"]) for r in records}
        self.records = {Key.of(r): r for r in records}
        loaded: dict = {}
        self.nets = {}
        for key, spec in self.specs.items():
            if spec not in loaded:
                loaded[spec] = spec.load()
            self.nets[key] = loaded[spec]
        self.sources = read_sources(self.out)
        self.tol = float(self.sources.get("tol", 1e-6))
        self.external, self.notes = load_external(self.sources, self.nets, {k: s.file for k, s in self.specs.items()})

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def x0(self, r: dict) -> np.ndarray:
        return load_sample(data_path(r["data"]), r["split"], r["index"])[0]


def claims_of(r: dict, ctx: Context) -> dict[str, dict]:
    """Per source: {"kind", "verdict", "witness", "time_s", "bounds": {layer: (lo, hi) over the audited neurons}}."""
    out = {}
    for label, c in r["claims"].items():
        out[label] = {"kind": c["kind"], "verdict": c["verdict"], "witness": None, "time_s": c["time_s"],
                      "bounds": {int(i): (_arr(b["lo"]), _arr(b["hi"])) for i, b in c["bounds"].items()}}
    for c in ctx.external.get(Key.of(r), []):
        bounds = {}
        for i, (lo, hi) in c.bounds.items():
            if str(i) in r["exact_bounds"]:
                n = np.asarray(r["exact_bounds"][str(i)]["neurons"], dtype=np.int64)
                bounds[i] = (lo[n], hi[n])
            else:
                ctx.note(f"{c.source}: bounds of layer input {i} are not audited (no exact bounds computed there; "
                         "the first affine layer's input, or a layer added after the instance's exact run)")
        mine = out.setdefault(c.source, {"kind": c.kind, "verdict": None, "witness": None, "time_s": None, "bounds": {}})
        mine["bounds"].update(bounds)  # one tool may give a bounds file and a results CSV
        if c.verdict is not None:
            mine.update(kind=c.kind, verdict=c.verdict, witness=c.witness, time_s=c.time_s)
    return out


def compare_bounds(lo_c, hi_c, ex: dict, tol: float) -> dict:
    """Per neuron comparisons of claimed (lo_c, hi_c) with the exact record ``ex`` (module docstring)."""
    lo, hi, la, ha = (_arr(ex[k]) for k in ("lo", "hi", "lo_attained", "hi_attained"))
    exact = np.asarray(ex["status"]) == "exact"
    t_lo, t_hi = tol * np.maximum(1.0, np.abs(la)), tol * np.maximum(1.0, np.abs(ha))
    unsound_lo, unsound_hi = lo_c > la + t_lo, hi_c < ha - t_hi
    gap_lo, gap_hi = np.maximum(lo - lo_c, 0.0), np.maximum(hi_c - hi, 0.0)
    return {"unsound_lo": unsound_lo, "unsound_hi": unsound_hi,
            "undecided": (~exact) & ((~unsound_lo & (lo_c > lo + t_lo)) | (~unsound_hi & (hi_c < hi - t_hi))),
            "exact": exact, "gap_lo": gap_lo, "gap_hi": gap_hi,
            "tight_lo": exact & (gap_lo <= t_lo) & ~unsound_lo, "tight_hi": exact & (gap_hi <= t_hi) & ~unsound_hi,
            "unstable_claimed": (lo_c < 0) & (hi_c > 0), "unstable_exact": (la < 0) & (ha > 0),
            "lo": la, "hi": ha, "lo_c": lo_c, "hi_c": hi_c}


def check_verdict(r: dict, c: dict, ctx: Context, net):
    """('' if the verdict claim ``c`` is consistent with the exact answer, else why it is unsound;
    the check of its witness, ``interchange.witness.WitnessCheck``, or None)."""
    exact = r["verdict"]
    if c["verdict"] == "verified" and exact["status"] == "falsified":
        return f"claims verified (unsat); {exact['method']} found a counterexample ({r.get('counterexample')})", None
    if c["verdict"] != "falsified" or c["kind"] == "ours":
        return "", None
    if c["witness"] is None:
        return ("claims falsified (sat) without a witness, but the exact method proved verified"
                if exact["status"] == "verified" else ""), None
    chk = check_witness(net, ctx.x0(r), r["label"], parse_threat(r["threat"]), c["witness"])
    if chk.kind == "wrong":
        return f"claims falsified (sat); the witness: {chk.why}", chk
    if exact["status"] == "verified" and chk.contradicts(exact["margin_lb"]):
        return (f"claims falsified (sat) with {chk.why}, but {exact['method']} proved every margin >= "
                f"{exact['margin_lb']:.3g}"), chk
    return "", chk


def analyse(records: list[dict], ctx: Context) -> dict:
    """Every comparison of the audit (see the module docstring), as rows for tables and figures."""
    unsound, neurons, verdicts = [], [], []
    for r in records:
        net = ctx.nets[Key.of(r)]
        where = {k: r[k] for k in ("model", "split", "index", "threat")}
        for source, c in claims_of(r, ctx).items():
            if c["verdict"] is not None:
                why, chk = check_verdict(r, c, ctx, net)
                if chk is not None and chk.kind == "boundary" and not why:
                    ctx.note(f"{source}: {r['model']} {r['split']}#{r['index']} {r['threat']}: sat with {chk.why}; "
                             "not counted as unsound")
                verdicts.append({**where, "kind": r["kind"], "eps": r["eps"], "source": source, "claimed": c["verdict"],
                                 "exact": r["verdict"]["status"], "unsound": bool(why), "why": why,
                                 "witness": "" if chk is None else chk.kind,
                                 "time_s": c["time_s"]})
                if why:
                    unsound.append({**where, "source": source, "what": "verdict", "layer": "", "neuron": "",
                                    "claimed": c["verdict"], "exact": r["verdict"]["status"], "excess": "", "why": why})
            for i, (lo_c, hi_c) in c["bounds"].items():
                ex = r["exact_bounds"][str(i)]
                cmp = compare_bounds(lo_c, hi_c, ex, ctx.tol)
                relu_input = i in net.relu_inputs.values()
                for k, n in enumerate(ex["neurons"]):
                    neurons.append({**where, "kind": r["kind"], "eps": r["eps"], "source": source, "layer": i,
                                    "layer_name": r["layers"][str(i)], "neuron": n, "relu_input": relu_input,
                                    **{f: (bool(v[k]) if v.dtype == bool else float(v[k])) for f, v in cmp.items()}})
                    for side, bad, claimed, exact in (("lower", cmp["unsound_lo"], lo_c, cmp["lo"]),
                                                      ("upper", cmp["unsound_hi"], hi_c, cmp["hi"])):
                        if bad[k]:
                            unsound.append({**where, "source": source, "what": f"{side} bound", "layer": i, "neuron": n,
                                            "claimed": float(claimed[k]), "exact": float(exact[k]),
                                            "excess": abs(float(claimed[k] - exact[k])),
                                            "why": f"a point of the set reaches {float(exact[k]):.9g}"})
    return {"unsound": unsound, "neurons": neurons, "verdicts": verdicts}


def _pct(a) -> str:
    return f"{100 * a:.1f}%"


def tightness(neurons: list[dict], keys=("model", "layer", "source")) -> list[dict]:
    """Per group: bounds audited, exact ones, median / max gap, tight fraction, unstable claimed vs exact, unsound."""
    groups: dict = {}
    for n in neurons:
        groups.setdefault(tuple(n[k] for k in keys), []).append(n)
    rows = []
    for g, ns in groups.items():
        ex = [n for n in ns if n["exact"]]
        gaps = [n["gap_lo"] for n in ex] + [n["gap_hi"] for n in ex]
        tight = sum(n["tight_lo"] for n in ex) + sum(n["tight_hi"] for n in ex)
        relu = [n for n in ns if n["relu_input"]]
        rows.append({**dict(zip(keys, g)), "layer_name": ns[0]["layer_name"], "neurons": len(ns), "exact": len(ex),
                     "median_gap": statistics.median(gaps) if gaps else float("nan"),
                     "max_gap": max(gaps) if gaps else float("nan"),
                     "tight": tight / len(gaps) if gaps else float("nan"),
                     "unstable_claimed": sum(n["unstable_claimed"] for n in relu) if relu else "",
                     "unstable_exact": sum(n["unstable_exact"] for n in relu) if relu else "",
                     "undecided": sum(n["undecided"] for n in ns),
                     "unsound": sum(n["unsound_lo"] + n["unsound_hi"] for n in ns)})
    return rows


def confusion(verdicts: list[dict]) -> list[dict]:
    """Per source and claimed status: counts by exact answer (undecided: the exact method did not decide)."""
    rows = []
    for source in dict.fromkeys(v["source"] for v in verdicts):
        vs = [v for v in verdicts if v["source"] == source]
        for claimed in STATUSES:
            hit = [v for v in vs if v["claimed"] == claimed]
            if hit:
                exact = Counter(v["exact"] if v["exact"] in ("verified", "falsified") else "undecided" for v in hit)
                rows.append({"source": source, "claimed": claimed, **{e: exact.get(e, 0) for e in EXACT_CLASSES},
                             "unsound": sum(v["unsound"] for v in hit)})
    return rows


def accuracy(records: list[dict], verdicts: list[dict]) -> list[dict]:
    """Per model x threat: claimed certified accuracy of every source vs the exact robust accuracy."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["model"], r["kind"], r["eps"], r["threat"]), []).append(r)
    rows = []
    for (model, kind, eps, threat), rs in sorted(groups.items(), key=lambda g: (g[0][0], list(KINDS).index(g[0][1]),
                                                                                 parse_eps(g[0][2]), g[0][3])):
        n = len(rs)
        ver = sum(r["verdict"]["status"] == "verified" for r in rs)
        fal = sum(r["verdict"]["status"] == "falsified" for r in rs)
        row = {"model": model, "kind": kind, "eps": eps, "threat": threat, "n": n}
        for source in dict.fromkeys(v["source"] for v in verdicts):
            vs = [v for v in verdicts if v["source"] == source and (v["model"], v["threat"]) == (model, threat)]
            if vs:
                row[source] = round(sum(v["claimed"] == "verified" for v in vs) / n, 4)
        row.update(exact_robust_lo=round(ver / n, 4), exact_robust_hi=round(1 - fal / n, 4), undecided=n - ver - fal)
        rows.append(row)
    return rows


def cost(records: list[dict]) -> list[dict]:
    """Per model and layer: what the exact bounds cost per neuron, and how they were obtained."""
    groups: dict = {}
    for r in records:
        for i, ex in r["exact_bounds"].items():
            groups.setdefault((r["model"], int(i), r["layers"][i]), []).append(ex)
    rows = []
    for (model, i, name), exs in groups.items():
        s = np.concatenate([_arr(e["neuron_s"]) for e in exs])
        hows = Counter(h for e in exs for h in e["how_lo"] + e["how_hi"])
        status = Counter(st for e in exs for st in e["status"])
        rows.append({"model": model, "layer": i, "layer_name": name, "neurons": len(s), "exact": status.get("exact", 0),
                     "median_s": float(np.median(s)), "mean_s": float(np.mean(s)), "max_s": float(np.max(s)),
                     "how": ", ".join(f"{h} {c}" for h, c in hows.most_common())})
    return rows


def _write_csv(path: Path, rows: list[dict], cols=None) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, cols or list(dict.fromkeys(k for r in rows for k in r)), restval="")
        w.writeheader()
        w.writerows(rows)


def _g(key: str, spec: str = ".3g"):
    return lambda r: "-" if r.get(key) in (None, "") or (isinstance(r[key], float) and np.isnan(r[key])) else format(r[key], spec)


def markdown(records, found, tight, conf, acc, costs, ctx) -> str:
    sources = list(dict.fromkeys(v["source"] for v in found["verdicts"])) or list(dict.fromkeys(n["source"] for n in found["neurons"]))
    unsound = found["unsound"]
    n_bounds = 2 * len(found["neurons"])
    bounds_s = sum(r["exact_bounds_s"] for r in records)
    verdict_s = sum(r["verdict"]["time_s"] for r in records)
    models = list(dict.fromkeys(r["model"] for r in records))
    head = (f"{len(records)} instances (input x threat) of {', '.join(models)}; claims of {', '.join(sources)}; "
            f"exact verdicts by {', '.join(sorted({r['verdict']['method'] for r in records}))}; tolerance {ctx.tol:g} x max(1, |value|); "
            f"host(s) {', '.join(sorted({r['host'] for r in records}))}. Exact bounds of {len(found['neurons']) // max(len(sources), 1)} "
            f"neurons per source, computed in {bounds_s:.1f} s; exact verdicts {verdict_s:.1f} s.")
    if unsound:
        top = sorted(unsound, key=lambda u: (u["what"] != "verdict", -(u["excess"] or 0) if u["excess"] != "" else 0))[:50]
        sound = (f"## UNSOUND CLAIMS: {len(unsound)}\n\nEach row is a claim that an exact answer contradicts "
                 f"(all of them in `unsound.csv`{'; the 50 largest here' if len(unsound) > 50 else ''}).\n\n" +
                 _md(top, {"source": "source", "model": "model", "instance": lambda u: f"{u['split']}#{u['index']}",
                           "threat": lambda u: f"`{u['threat']}`", "what": "what", "layer": "layer", "neuron": "neuron",
                           "claimed": _g("claimed", ".9g") if top and top[0]["what"] != "verdict" else "claimed",
                           "exact": "exact", "why": "why"}))
    else:
        sound = (f"## Unsound claims: 0\n\nNo claimed bound lies beyond an exact value by more than the tolerance "
                 f"({n_bounds} bounds checked), no claimed verified instance has a counterexample, and every claimed "
                 "counterexample replays.")
    notes = "".join(f"\n* {n}" for n in ctx.notes)
    tcols = {"model": "model", "layer": lambda r: f"{r['layer']} ({r['layer_name']})", "source": "source",
             "neurons": "neurons", "exact": "exact", "median gap": _g("median_gap"), "max gap": _g("max_gap"),
             "tight": lambda r: "-" if np.isnan(r["tight"]) else _pct(r["tight"]),
             "unstable claimed / exact": lambda r: f"{r['unstable_claimed']} / {r['unstable_exact']}" if r["unstable_claimed"] != "" else "-",
             "unsound": "unsound", "undecided": "undecided"}
    ccols = {"source": "source", "claimed": "claimed", **{f"exact {e}": e for e in EXACT_CLASSES}, "unsound": "unsound"}
    acols = {"model": "model", "threat": lambda r: f"`{r['threat']}`", "n": "n",
             **{s: _g(s, ".2f") for s in sources if any(s in r for r in acc)},
             "exact robust": lambda r: f"{r['exact_robust_lo']:.2f}" + (f"-{r['exact_robust_hi']:.2f}" if r["undecided"] else "")}
    kcols = {"model": "model", "layer": lambda r: f"{r['layer']} ({r['layer_name']})", "neurons": "neurons",
             "exact": "exact", "median s / neuron": _g("median_s"), "mean s": _g("mean_s"), "max s": _g("max_s"),
             "how the bounds were obtained (sides)": "how"}
    return f"""# Audit report

{head}
{notes}

{sound}

## Verdicts against the exact answer

{_md(conf, ccols)}

## Claimed certified accuracy vs exact robust accuracy

Source columns: instances the source claims verified / n. Exact robust: verified by the exact method / n
(a range while some are undecided: up to 1 - falsified / n).

{_md(acc, acols)}

## Tightness per layer

Over the audited neurons whose exact bounds are exact (both sides): gap = exact minimum - claimed lower
bound and claimed upper bound - exact maximum (0 when the claim lies in the exact value's interval, which is
at most two solver margins wide); tight = gap within the tolerance.
Unstable: ReLU inputs claimed to cross 0 / that do cross 0 over the set. Full table by threat: `tightness.csv`.

{_md(tight, tcols)}

## What the exact answers cost

Exact bounds per neuron (both sides; MILP build time shared among the neurons of a model), and how each
side was obtained (`exact_bounds`). Per-instance times: `results.jsonl`.

{_md(costs, kcols)}
"""


def write_report(out) -> dict:
    """Write OUT/report.md, unsound.csv, tightness.csv, verdicts.csv, confusion.csv, accuracy.csv,
    cost.csv and OUT/figures/; return what was found."""
    from .plots import write_figures

    out = Path(out)
    records = list({"|".join(map(str, Key.of(r))): r for r in read_results(out / "results.jsonl")}.values())
    if not records:
        raise InputError(f"{out / 'results.jsonl'}: no audit results (run stverify audit CONFIG --out {out} first)")
    ctx = Context(out, records)
    found = analyse(records, ctx)
    tight = tightness(found["neurons"])
    conf, acc, costs = confusion(found["verdicts"]), accuracy(records, found["verdicts"]), cost(records)
    _write_csv(out / "unsound.csv", found["unsound"], UNSOUND_FIELDS)
    _write_csv(out / "tightness.csv", tightness(found["neurons"], ("model", "kind", "eps", "layer", "source")))
    _write_csv(out / "verdicts.csv", found["verdicts"])
    _write_csv(out / "confusion.csv", conf)
    _write_csv(out / "accuracy.csv", acc)
    _write_csv(out / "cost.csv", costs)
    figures = write_figures(found["neurons"], out / "figures")
    (out / "report.md").write_text(markdown(records, found, tight, conf, acc, costs, ctx) + "\n## Figures\n\n" +
                                   "\n".join(f"![{p.stem}](figures/{p.name})" for p in figures) + "\n")
    return {"records": len(records), "unsound": found["unsound"], "tightness": tight, "confusion": conf,
            "accuracy": acc, "cost": costs, "figures": figures, "notes": ctx.notes}
