"""VNN-COMP's plain-text files: a benchmark's ``instances.csv``, one instance's result file, a tool's results CSV.

* ``instances.csv``: rows ``onnx,vnnlib,timeout`` (paths relative to the file's folder), no header.
* result file (what a tool writes for one instance): the first line is ``sat``, ``unsat``,
  ``timeout``, ``unknown`` or ``error``; after ``sat`` comes the witness
  ``((X_0 v) (X_1 v) ... (Y_0 w) ...)``, one pair a line, ``X_i`` the input flattened in ONNX
  (row-major) order and ``Y_j`` the outputs.  VNN-COMP 2021's ``holds`` / ``violated`` read as
  ``unsat`` / ``sat``.
* results CSV (one tool, many instances): rows ``benchmark,onnx,vnnlib,prepare_time,result,run_time``,
  no header (one is skipped if present); stverify also reads an optional seventh column, the path
  of a ``sat`` row's result file holding its witness (relative to the CSV's folder).

``sat`` means the property is violated (a counterexample exists): stverify's ``falsified``;
``unsat`` means it holds: ``verified``.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

RESULTS = ("sat", "unsat", "timeout", "unknown", "error")
_ALIASES = {"holds": "unsat", "violated": "sat"}
STATUS_TO_RESULT = {"falsified": "sat", "verified": "unsat", "timeout": "timeout", "unknown": "unknown", "error": "error"}
RESULT_TO_STATUS = {v: k for k, v in STATUS_TO_RESULT.items()}
_PAIR = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")


@dataclass(frozen=True)
class Instance:
    onnx: Path
    vnnlib: Path
    timeout: float


@dataclass(frozen=True)
class Witness:
    """A counterexample as VNN-COMP writes it: the flat input x and the outputs y it claims."""

    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class ResultRow:
    benchmark: str
    onnx: str
    vnnlib: str
    prepare_time: float
    result: str
    run_time: float
    witness: Path | None = None  # a result file with the witness of a ``sat`` row


def _number(text: str, where: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{where}: {what} expects a number, found {text!r}") from None
    if math.isnan(v):
        raise InputError(f"{where}: {what} is NaN")
    return v


def _result(text: str, where: str) -> str:
    r = _ALIASES.get(text.strip().lower(), text.strip().lower())
    if r not in RESULTS:
        raise InputError(f"{where}: result expects one of {', '.join(RESULTS)} (or holds / violated), found {text.strip()!r}")
    return r


def _rows(path: Path):
    try:
        with path.open(newline="") as f:
            rows = [(i, [c.strip() for c in row]) for i, row in enumerate(csv.reader(f), 1) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the file ({e})") from None
    return rows


def read_instances(path) -> list[Instance]:
    """The rows of a benchmark's ``instances.csv``; paths resolved against its folder."""
    path = Path(path)
    out = []
    for i, row in _rows(path):
        if len(row) != 3:
            raise InputError(f"{path}:{i}: expected 3 columns onnx,vnnlib,timeout, found {len(row)}")
        t = _number(row[2], f"{path}:{i}", "timeout")
        if not t > 0:
            raise InputError(f"{path}:{i}: timeout must be > 0, found {row[2]!r}")
        out.append(Instance(path.parent / row[0], path.parent / row[1], t))
    return out


def write_instances(path, instances) -> None:
    """Write ``instances.csv`` with paths relative to its folder."""
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        for inst in instances:
            w.writerow([_relative(inst.onnx, path.parent), _relative(inst.vnnlib, path.parent), f"{inst.timeout:g}"])


def _relative(p, base: Path) -> str:
    p = Path(p)
    try:
        return p.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def format_result(result: str, witness: Witness | None = None) -> str:
    """The text of a result file (module docstring); a ``sat`` result needs its witness."""
    if result not in RESULTS:
        raise ValueError(f"result must be one of {RESULTS}, got {result!r}")
    if result != "sat":
        return result + "\n"
    if witness is None:
        raise ValueError("a sat result needs its witness")
    pairs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(np.ravel(witness.x))]
    pairs += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(np.ravel(witness.y))]
    return "sat\n(" + "\n ".join(pairs) + ")\n"


def write_result(path, result: str, witness: Witness | None = None) -> None:
    Path(path).write_text(format_result(result, witness))


def parse_witness(text: str, where: str = "witness") -> Witness:
    """The ``((X_i v) ... (Y_j v))`` part of a result file; indices must run 0..n-1 without gaps."""
    values: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    for var, idx, val in _PAIR.findall(text):
        if int(idx) in values[var]:
            raise InputError(f"{where}: {var}_{idx} given twice")
        values[var][int(idx)] = _number(val, where, f"{var}_{idx}")
    arrays = []
    for var in ("X", "Y"):
        got = values[var]
        if sorted(got) != list(range(len(got))):
            missing = sorted(set(range(max(got, default=-1) + 1)) - set(got))[:5]
            raise InputError(f"{where}: {var} indices must run 0..n-1; missing {', '.join(f'{var}_{m}' for m in missing)}")
        arrays.append(np.array([got[i] for i in range(len(got))], dtype=np.float64))
    if not len(arrays[0]):
        raise InputError(f"{where}: no (X_i value) pairs found")
    return Witness(*arrays)


def read_result(path) -> tuple[str, Witness | None]:
    """(result, witness or None) from a result file."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the result file ({e})") from None
    first, _, rest = text.strip().partition("\n")
    result = _result(first, f"{path}:1")
    return result, parse_witness(rest, str(path)) if result == "sat" and rest.strip() else None


def read_results_csv(path) -> list[ResultRow]:
    """The rows of a tool's results CSV (module docstring)."""
    path = Path(path)
    out = []
    for i, row in _rows(path):
        if i == 1 and row and row[0].lower() == "benchmark":
            continue  # a header
        if len(row) not in (6, 7):
            raise InputError(f"{path}:{i}: expected 6 or 7 columns benchmark,onnx,vnnlib,prepare_time,result,run_time"
                             f"[,witness], found {len(row)}")
        where = f"{path}:{i}"
        witness = path.parent / row[6] if len(row) == 7 and row[6] else None
        out.append(ResultRow(row[0], row[1], row[2], _number(row[3], where, "prepare_time"), _result(row[4], where),
                             _number(row[5], where, "run_time"), witness))
    return out


def write_results_csv(path, rows) -> None:
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        for r in rows:
            w.writerow([r.benchmark, r.onnx, r.vnnlib, f"{r.prepare_time:g}", r.result, f"{r.run_time:g}"]
                       + ([_relative(r.witness, path.parent)] if r.witness is not None else []))
