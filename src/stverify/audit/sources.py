"""``OUT/sources.json`` of an audit: the claim files it audits and its tolerance.

``audit`` writes it before the first instance runs; the report reads it, so that a report written
later (``--report-only``, ``--resume``) audits the same claims with the same tolerance::

    {"bounds_files": {tool: path}, "results": {tool: path}, "manifest": path or null, "tol": 1e-06}
"""
from __future__ import annotations

import json
from pathlib import Path

NAME = "sources.json"
DEFAULT_TOL = 1e-6  # a bound claim is unsound beyond tol * max(1, |exact value|)


def write_sources(out, bounds_files: dict, results: dict, manifest: str | None, tol: float) -> Path:
    path = Path(out) / NAME
    path.write_text(json.dumps({"bounds_files": bounds_files, "results": results, "manifest": manifest, "tol": tol},
                               indent=1) + "\n")
    return path


def read_sources(out) -> dict:
    """The sources of the audit in ``out`` (none, at the default tolerance, when it has no sources.json)."""
    path = Path(out) / NAME
    if not path.exists():
        return {"bounds_files": {}, "results": {}, "manifest": None, "tol": DEFAULT_TOL}
    return json.loads(path.read_text())
