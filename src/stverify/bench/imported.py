"""Other tools' VNN-COMP results as records of a bench run, so that ``stverify report --import``
puts them beside stverify's methods.

A tool's results CSV (``interchange.vnncomp``: benchmark, onnx, vnnlib, prepare_time, result,
run_time[, witness file]) names VNN-LIB files; the manifest of the export that wrote them
(``interchange.manifest``: ``--manifest PATH``, else the ``manifest.json`` beside the CSV) says
which stverify instance (model, split, index, threat) each file states.  Each instance becomes one
record with the tool's name as its method: ``sat`` -> falsified, its counterexample the ``X``
values of the witness file (the report checks it, ``interchange.witness``: one on the decision
boundary is listed as a boundary witness, not a violation), ``unsat`` -> verified, ``timeout``,
``unknown``, ``error`` as they are; ``time_s`` is the run time.  Files written with ``--split-members`` state
one member box each; the rows of one union instance combine into one record: falsified if some
member is ``sat``, verified if every member is ``unsat``, else timeout, unknown or error (in that
order), the time summed.  An imported tool counts as incomplete: its ``verified`` is a claim
stverify checks against the others, never a proof of exact robust accuracy.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..interchange.manifest import NAME as MANIFEST, match, read_manifest
from ..interchange.vnncomp import RESULT_TO_STATUS, read_results_csv
from ..threats import format_eps, parse_threat

METHOD = "import"  # the record's call.method: what marks an imported result
COMBINE = ("falsified", "timeout", "unknown", "error")  # a union's status: the first any member has, else verified


def parse_import(text: str) -> tuple[str, Path]:
    """``NAME=results.csv`` -> (NAME, path)."""
    name, eq, path = text.partition("=")
    if not eq or not name.strip() or not path.strip():
        raise InputError(f"--import expects NAME=results.csv, found {text!r}")
    return name.strip(), Path(path.strip())


def is_imported(r: dict) -> bool:
    return r["call"]["method"] == METHOD


def _status(pairs, n_files: int) -> tuple[str, str]:
    """The status of one instance from the (row, exported file) pairs of its files, and why when undecided."""
    statuses = [RESULT_TO_STATUS[r.result] for r, _ in pairs]
    for s in COMBINE:
        if s in statuses:
            return s, ""
    missing = n_files - len({e.vnnlib for _, e in pairs})
    return ("unknown", f"{missing} of {n_files} member files have no result") if missing else ("verified", "")


def import_results(name: str, csv_path, manifest=None) -> tuple[list[dict], dict]:
    """The records of one tool's results CSV, and what was found (rows, matched, unmatched, manifest)."""
    csv_path = Path(csv_path)
    manifest = Path(manifest) if manifest else csv_path.parent / MANIFEST
    if not manifest.exists():
        raise InputError(f"--import {name}: no export manifest at {manifest}; pass --manifest PATH (the manifest.json "
                         "that `stverify export` wrote beside the VNN-LIB files)")
    exported = read_manifest(manifest)
    rows = read_results_csv(csv_path)
    found = match([r.vnnlib for r in rows], exported)
    members: dict = {}  # instance -> the number of files stating it
    for e in exported:
        k = (e.model, e.split, e.index, e.member or e.threat)
        members[k] = members.get(k, 0) + 1
    groups: dict = {}
    for r in rows:
        if r.vnnlib in found:
            e = found[r.vnnlib]
            groups.setdefault((e.model, e.split, e.index, e.member or e.threat), []).append((r, e))
    records = []
    for key, pairs in groups.items():
        rs = [r for r, _ in pairs]
        e = pairs[0][1]
        threat = parse_threat(key[3])
        status, message = _status(pairs, members[key])
        sat = next((r for r in rs if r.result == "sat"), None)
        records.append({"model": e.model, "model_file": e.model_file, "arch": e.arch, "data": e.data, "split": e.split,
                        "index": e.index, "label": e.label, "property": e.property, "kind": threat.kind,
                        "eps": format_eps(threat.eps),
                        "threat": key[3], "method": name,
                        "call": {"method": METHOD, "options": {"results": str(csv_path)}, "timeout": e.timeout},
                        "status": status, "time_s": sum(r.run_time for r in rs), "margin_lb": None, "margin_ub": None,
                        "counterexample": None, "witness": None if sat is None or sat.witness is None else str(sat.witness),
                        "stats": {"prepare_time": sum(r.prepare_time for r in rs), "files": len(rs)}, "message": message})
    return records, {"name": name, "results": str(csv_path), "manifest": str(manifest), "rows": len(rows),
                     "matched": sum(r.vnnlib in found for r in rows), "unmatched": sum(r.vnnlib not in found for r in rows),
                     "instances": len(records)}
