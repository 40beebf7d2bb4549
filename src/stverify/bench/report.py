"""Tables of a run: per model x threat x method counts and times, per model x threat the verified
fraction of every method, the exact robust accuracy, the completeness gap and the soundness check.

An *instance* here is one input under one threat (model, split, index, threat); each method gives
one result for it.  Other tools' VNN-COMP results join as further methods (``imported``;
``stverify report DIR --import NAME=results.csv``).  Soundness violation: an instance with a
``falsified`` result (an imported ``sat``) whose counterexample (witness) is missing, lies outside
the threat set or does not replay (``replay.replay``), or with both a ``verified`` and a
``falsified`` result.  An imported witness on the decision boundary (``interchange.witness``: both
margins within ``tolerances.WITNESS_TOL_REL``) is a *boundary witness*, listed apart, not a
violation, unless a ``verified`` result's margin_lb rules it out.  Completeness gap: instances that
every STBP variant left undecided and a complete method decided.
"""
from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from ..data import data_path, load_sample
from ..errors import InputError
from ..interchange.vnncomp import read_result
from ..interchange.witness import WitnessCheck, check_witness
from ..properties import parse_property
from ..result import STATUSES
from ..threats import KINDS, parse_eps, parse_threat
from .config import ModelSpec, load_config
from .imported import import_results, is_imported
from .methods import COMPLETE, is_complete
from .plots import write_figures
from .runner import WARM_UP_S
from .store import instance_key, read_results

STBP = frozenset({"stbp"})
VIOLATION_FIELDS = ("model", "split", "index", "threat", "why")
BOUNDARY_FIELDS = ("model", "split", "index", "threat", "method", "margin_float64", "margin_float32", "tol")


def latest(records: list[dict]) -> list[dict]:
    """The last result of every instance key (a resumed run never repeats one, but be safe)."""
    return list({instance_key(r): r for r in records}.values())


@dataclass
class Instance:
    key: tuple  # (model, split, index, threat)
    kind: str
    eps: str
    results: dict = field(default_factory=dict)  # method label -> record

    def said(self, status: str, verifiers=None) -> list[str]:
        """Labels of the methods (among the verify() methods ``verifiers``, default all) that answered ``status``."""
        return [m for m, r in self.results.items()
                if r["status"] == status and (verifiers is None or r["call"]["method"] in verifiers)]

    def decided(self, verifiers) -> bool:
        return bool(self.said("verified", verifiers) or self.said("falsified", verifiers))

    def ran(self, verifiers) -> bool:
        return any(r["call"]["method"] in verifiers for r in self.results.values())


def instances(records: list[dict]) -> list[Instance]:
    out: dict = {}
    for r in records:
        k = (r["model"], r["split"], r["index"], r["threat"])
        out.setdefault(k, Instance(k, r["kind"], r["eps"])).results[r["method"]] = r
    models, kinds = list(dict.fromkeys(k[0] for k in out)), list(KINDS)
    return sorted(out.values(),
                  key=lambda i: (models.index(i.key[0]), kinds.index(i.kind), parse_eps(i.eps), i.key[3], i.key[2]))


class Replayer:
    """Replays counterexamples (stored ones, imported witnesses) on the float64 reference and the float32 model."""

    def __init__(self, out: Path):
        self.out, self.nets = Path(out), {}

    def point(self, r: dict) -> tuple[np.ndarray | None, str]:
        """The counterexample of result r (flat for a witness), or None and why there is none."""
        if is_imported(r):
            if not r.get("witness"):
                return None, "no witness (the results CSV names no result file for this sat)"
            try:
                _, w = read_result(r["witness"])
            except InputError as e:
                return None, str(e)
            return (None, f"{r['witness']} holds no witness") if w is None else (w.x, "")
        if not r.get("counterexample"):
            return None, "no counterexample stored"
        path = self.out / r["counterexample"]
        return (np.load(path), "") if path.exists() else (None, f"{path} is missing")

    def __call__(self, r: dict) -> WitnessCheck:
        """The check of the counterexample of result r (``interchange.witness``); stverify's own must replay."""
        p, why = self.point(r)
        if p is None:
            return WitnessCheck("wrong", why)
        spec = ModelSpec(r["model"], r.get("model_file"), r.get("arch"))
        if spec not in self.nets:
            self.nets[spec] = spec.load()
        x, _ = load_sample(data_path(r["data"]), r["split"], r["index"])
        net, y = self.nets[spec], r["label"]
        if r.get("property"):  # an output property (a regression band, ...): bound to this instance again
            y = parse_property(r["property"]).bind(net, x, None if y < 0 else y)
        chk = check_witness(net, x, y, parse_threat(r["threat"]), p)
        return chk if chk.kind != "boundary" or is_imported(r) else WitnessCheck("wrong", f"it does not replay: {chk.why}")


def violations(insts: list[Instance], replayer) -> tuple[list[dict], list[dict]]:
    """(soundness violations, boundary witnesses) of the instances (module docstring)."""
    out, boundary = [], []
    for inst in insts:
        fal, ver = inst.said("falsified"), inst.said("verified")
        checks = {m: replayer(inst.results[m]) for m in fal}
        why = [f"{m}: falsified, but {c.why}" for m, c in checks.items() if c.kind == "wrong"]
        strict = [m for m in fal if checks[m].kind != "boundary"]
        if ver and strict:
            proof = " (a counterexample replays: the verified claims are wrong)" if any(
                checks[m].kind == "counterexample" for m in strict) else ""
            why.append(f"{', '.join(ver)} say verified, {', '.join(strict)} say falsified{proof}")
        for m, c in checks.items():
            if c.kind == "boundary":
                boundary.append(dict(zip(BOUNDARY_FIELDS, (*inst.key, m, c.margin64, c.margin32, c.tol))))
                why += [f"{v} says verified with margin_lb {inst.results[v]['margin_lb']:.3g}, but {m}: {c.why}"
                        for v in ver if c.contradicts(inst.results[v]["margin_lb"])]
        if why:
            out.append(dict(zip(VIOLATION_FIELDS, (*inst.key, "; ".join(why)))))
    return out, boundary


def method_stats(label: str, rs: list[dict]) -> dict:
    """Counts by status and time of the results ``rs`` of one method."""
    times = [r["time_s"] for r in rs]
    return {"method": label, "complete": is_complete(rs[0]), "n": len(rs),
            **{s: sum(r["status"] == s for r in rs) for s in STATUSES},
            "median_s": round(statistics.median(times), 4), "mean_s": round(statistics.mean(times), 4)}


def tables(insts: list[Instance], bad: list[dict]) -> tuple[list[dict], list[dict]]:
    """(summary rows per model x threat, method rows per model x threat x method)."""
    labels = list(dict.fromkeys(m for i in insts for m in i.results))
    bad_keys = {tuple(v[k] for k in VIOLATION_FIELDS[:4]) for v in bad}
    groups: dict = {}
    for inst in insts:
        groups.setdefault((inst.key[0], inst.kind, inst.eps, inst.key[3]), []).append(inst)
    summary, methods = [], []
    for (model, kind, eps, threat), group in groups.items():
        n = len(group)
        ver = sum(bool(i.said("verified", COMPLETE)) for i in group)
        fal = sum(bool(i.said("falsified")) for i in group)
        gap = [i for i in group if i.ran(STBP) and not i.decided(STBP) and i.decided(COMPLETE)]
        row = {"model": model, "kind": kind, "eps": eps, "threat": threat, "n": n}
        for m in labels:
            rs = [i.results[m] for i in group if m in i.results]
            if not rs:
                continue
            row[m] = round(sum(r["status"] == "verified" for r in rs) / n, 4)
            methods.append({"model": model, "kind": kind, "eps": eps, "threat": threat, **method_stats(m, rs)})
        row.update(exact_robust_lo=round(ver / n, 4), exact_robust_hi=round(1 - fal / n, 4), undecided=n - ver - fal,
                   stbp_gap=len(gap), stbp_gap_falsified=sum(bool(i.said("falsified", COMPLETE)) for i in gap),
                   violations=sum(i.key in bad_keys for i in group))
        summary.append(row)
    return summary, methods


def _write_csv(path: Path, rows: list[dict], cols=None) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, cols or list(dict.fromkeys(k for r in rows for k in r)), restval="")
        w.writeheader()
        w.writerows(rows)


def _num(key: str, spec: str):
    return lambda r: "-" if r.get(key) in (None, "") else format(r[key], spec)


def _md(rows: list[dict], cols: dict) -> str:
    """A markdown table; ``cols`` maps a header to a row key or a function of the row."""
    cell = lambda r, f: f(r) if callable(f) else r[f]  # noqa: E731
    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] +
                     ["| " + " | ".join(str(cell(r, f)) for f in cols.values()) + " |" for r in rows])


def markdown(records: list[dict], summary: list[dict], methods: list[dict], bad: list[dict], sources=(), boundary=()) -> str:
    labels = list(dict.fromkeys(r["method"] for r in records))
    star = {r["method"]: " *" if is_complete(r) else " †" if is_imported(r) else "" for r in records}
    where = {"model": "model", "threat": lambda r: f"`{r['threat']}`", "n": "n"}
    exact = lambda r: f"{r['exact_robust_lo']:.2f}" + (f"-{r['exact_robust_hi']:.2f}" if r["undecided"] else "")  # noqa: E731
    head = _md(summary, {**where, **{m + star[m]: _num(m, ".2f") for m in labels}, "exact robust acc": exact,
                         "undecided": "undecided", "soundness violations": "violations",
                         "STBP gap (falsified)": lambda r: f"{r['stbp_gap']} ({r['stbp_gap_falsified']})"})
    counts = {"method": lambda r: r["method"] + star[r["method"]], "n": "n", **{s: s for s in STATUSES},
              "median s": _num("median_s", ".3f"), "mean s": _num("mean_s", ".3f")}
    per = _md(methods, {**where, **counts})
    overall = _md([method_stats(m, [r for r in records if r["method"] == m]) for m in labels], counts)
    total = {k: sum(r[k] for r in summary) for k in ("n", "undecided", "stbp_gap", "stbp_gap_falsified", "violations")}
    robust = round(sum(r["exact_robust_lo"] * r["n"] for r in summary))
    if bad:
        sound = (f"## SOUNDNESS VIOLATIONS: {len(bad)}\n\nSome method answered wrongly on these instances; "
                 "no number below can be trusted until this is explained.\n\n" + _md(bad, {k: k for k in VIOLATION_FIELDS}))
    else:
        sound = ("## Soundness\n\n0 violations: no instance has both a verified and a falsified result, and every "
                 "counterexample replays on the float64 reference and the float32 model"
                 + (" or is a boundary witness (below)." if boundary else "."))
    if boundary:
        sound += (f"\n\n{len(boundary)} boundary witness(es): imported sat witnesses within tol (stverify.tolerances."
                  "WITNESS_TOL_REL x max(1, |logits|)) of the decision boundary in float64 and float32, where VNN-LIB's "
                  "tie counts as unsafe; no proven margin rules them out, so they are not violations "
                  "(`boundary.csv`).\n\n" + _md(list(boundary), {k: k for k in BOUNDARY_FIELDS}))
    ran = [r for r in records if not is_imported(r)]
    when = ""
    if ran:
        starts, ends = [r["started"] for r in ran], [r["finished"] for r in ran]
        span = (datetime.fromisoformat(max(ends)) - datetime.fromisoformat(min(starts))).total_seconds()
        when = (f"host(s) {', '.join(sorted({r['host'] for r in ran}))};\nfirst start {min(starts)}, last finish "
                f"{max(ends)} ({span:.0f} s; it includes any pause before a --resume).")
    imported = ""
    if sources:
        imported = ("\n## Imported results\n\n† another tool's VNN-COMP results, matched to the instances through the "
                    "export manifest; counted as incomplete (its verified is a claim, checked against the others; its "
                    "sat witnesses are replayed).\n\n" + _md(list(sources), {k: k for k in (
                        "name", "results", "manifest", "rows", "matched", "unmatched", "instances")}) + "\n")
    return f"""# Benchmark report

{len(records)} results on {len({tuple(r[k] for k in VIOLATION_FIELDS[:4]) for r in records})} instances (input x threat);
methods {', '.join(m + star[m] for m in labels)} (* complete, † imported); {when}
{imported}
{sound}

## Overall

{total['n']} instances: {robust} verified by a complete method (exact robust accuracy {robust / total['n']:.3f}),
{total['n'] - robust - total['undecided']} falsified, {total['undecided']} undecided; STBP gap {total['stbp_gap']}
({total['stbp_gap_falsified']} falsified); soundness violations {total['violations']}.

{overall}

## Verified fraction per method, exact robust accuracy

Method columns: instances verified / n (certified accuracy for an incomplete method; for a complete
one, the exact robust accuracy as far as it decided). Exact robust acc: verified by a complete
method / n; a range lo-hi while some instances are undecided (hi = 1 - falsified / n).
STBP gap: instances that every STBP variant left undecided and a complete method decided
(of them, falsified).

{head}

## Per method: counts and time

{_timing_note(ran)}

{per}
"""


def _timing_note(ran: list[dict]) -> str:
    """What the times of the tables measure (the runner's warm-up, ``bench.runner``)."""
    note = "Times: time_s, the wall time of one verification (median and mean over the instances), "
    if ran and all(r.get("warm_up_s") is not None for r in ran):
        return note + ("warm: measured in its instance process after an untimed warm-up run of the same call "
                       f"(timeout at most {WARM_UP_S:g} s), so a process's one-time costs are left out.")
    return note + "as recorded; results without a warm-up include a fresh process's first-call costs."


def with_imports(records: list[dict], imports, manifest=None) -> tuple[list[dict], list[dict]]:
    """``records`` and the records of other tools' results (``imports``: (name, results CSV) pairs), with
    the eps text of the run's records on the same instance; and what each import found."""
    eps = {tuple(r[k] for k in VIOLATION_FIELDS[:4]): r["eps"] for r in records}
    taken, sources = {r["method"] for r in records}, []
    for name, path in imports:
        if name in taken:
            raise InputError(f"--import {name}={path}: the name {name!r} is already a method of this report; choose another")
        taken.add(name)
        recs, found = import_results(name, path, manifest)
        records = records + [{**r, "eps": eps.get(tuple(r[k] for k in VIOLATION_FIELDS[:4]), r["eps"])} for r in recs]
        sources.append(found)
    return records, sources


def write_report(out, imports=(), manifest=None) -> dict:
    """Write DIR/report.md, summary.csv, methods.csv, violations.csv and DIR/figures/; return what was found.

    ``imports``: (name, results CSV) pairs of other tools' VNN-COMP results (``imported``), matched through
    ``manifest`` (default: the manifest.json beside each CSV)."""
    out = Path(out)
    records, sources = with_imports(latest(read_results(out / "results.jsonl")), imports, manifest)
    if not records:
        raise InputError(f"no results in {out / 'results.jsonl'}" + (" and none imported" if imports else ""))
    out.mkdir(parents=True, exist_ok=True)
    if (out / "config.toml").exists():  # tables and figures list the methods in the config's order
        rank = {m.label: i for i, m in enumerate(load_config(out / "config.toml").methods)}
        records.sort(key=lambda r: rank.get(r["method"], len(rank)))
    insts = instances(records)
    bad, boundary = violations(insts, Replayer(out))
    summary, methods = tables(insts, bad)
    _write_csv(out / "summary.csv", summary)
    _write_csv(out / "methods.csv", methods)
    _write_csv(out / "violations.csv", bad, VIOLATION_FIELDS)
    _write_csv(out / "boundary.csv", boundary, BOUNDARY_FIELDS)
    figures = write_figures(records, summary, out / "figures")
    (out / "report.md").write_text(markdown(records, summary, methods, bad, sources, boundary) + "\n## Figures\n\n" +
                                   "\n".join(f"![{p.stem}](figures/{p.name})" for p in figures) + "\n")
    return {"records": len(records), "instances": len(insts), "violations": bad, "boundary": boundary,
            "summary": summary, "figures": figures, "imports": sources}
