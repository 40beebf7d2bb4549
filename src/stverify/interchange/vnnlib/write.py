"""Writing VNN-LIB (see the package docstring): a threat set around x0 and an output property."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...threats import DEFAULT_DOMAIN, Threat
from ...properties import Atom, OutputSpec

MAX_BOUNDS = 1_000_000  # bounds (two per free input per member) one written file may hold: ~35 MB of text


def _num(v: float) -> str:
    """The shortest plain decimal that reads back as the float64 v (no exponent: SMT-LIB has none)."""
    if not math.isfinite(v):
        raise ValueError(f"VNN-LIB holds finite numbers only, got {v}")
    return np.format_float_positional(float(v), unique=True, trim="0")


def _atom_text(a: Atom) -> str:
    op = ">" if a.strict else ">="
    nz = np.flatnonzero(a.coef)
    if len(nz) == 1 and a.coef[nz[0]] in (1.0, -1.0):  # +-Y_j + d >= 0
        j, s = int(nz[0]), a.coef[nz[0]]
        return f"({op} Y_{j} {_num(-a.const)})" if s > 0 else f"({op.replace('>', '<')} Y_{j} {_num(a.const)})"
    if len(nz) == 2 and a.const == 0 and sorted(a.coef[nz]) == [-1.0, 1.0]:  # Y_i - Y_j >= 0
        i, j = int(nz[a.coef[nz] > 0][0]), int(nz[a.coef[nz] < 0][0])
        return f"({op} Y_{i} Y_{j})"
    terms = " ".join(f"(* {_num(a.coef[j])} Y_{j})" for j in nz) or "0.0"
    return f"({op} (+ {terms}) {_num(-a.const)})"


def format_vnnlib(lo: np.ndarray, hi: np.ndarray, output: OutputSpec, comment: str = "") -> str:
    """VNN-LIB text for the union of the boxes [lo_k, hi_k] (K x n arrays) and the unsafe set ``output``:
    bounds equal in every box at top level, one (and ...) per box for the others."""
    lo, hi = np.atleast_2d(lo), np.atleast_2d(hi)
    n = lo.shape[1]
    lines = [f"; {line}" for line in comment.splitlines()]
    lines += [f"(declare-const X_{i} Real)" for i in range(n)] + [f"(declare-const Y_{j} Real)" for j in range(output.n_outputs)]
    common = np.all((lo == lo[0]) & (hi == hi[0]), axis=0)
    for i in np.flatnonzero(common):
        lines += [f"(assert (<= X_{i} {_num(hi[0, i])}))", f"(assert (>= X_{i} {_num(lo[0, i])}))"]
    differ = np.flatnonzero(~common)
    if len(differ):
        lines.append("(assert (or")
        for k in range(len(lo)):
            lines.append("  (and " + " ".join(f"(<= X_{i} {_num(hi[k, i])}) (>= X_{i} {_num(lo[k, i])})" for i in differ) + ")")
        lines.append("))")
    if len(output.disjuncts) == 1:
        lines += [f"(assert {_atom_text(a)})" for a in output.disjuncts[0]]
    else:
        lines.append("(assert (or")
        lines += ["  (and " + " ".join(_atom_text(a) for a in d) + ")" for d in output.disjuncts]
        lines.append("))")
    return "\n".join(lines) + "\n"


def _output(label_or_spec, n_outputs: int | None) -> OutputSpec:
    if isinstance(label_or_spec, OutputSpec):
        return label_or_spec
    if n_outputs is None:
        raise ValueError("writing the robustness property of a label needs n_outputs (the network's class count)")
    return OutputSpec.robustness(int(label_or_spec), n_outputs)


def _member_arrays(threat: Threat, x0: np.ndarray, domain) -> tuple[np.ndarray, np.ndarray]:
    x0 = np.asarray(x0, dtype=np.float64)
    threat.validate(x0.shape)
    boxes = list(threat.member_boxes(x0, domain))
    return np.stack([b[0].ravel() for b in boxes]), np.stack([b[1].ravel() for b in boxes])


def write_vnnlib(path, threat: Threat, x0: np.ndarray, label_or_spec, n_outputs: int | None = None,
                 domain=DEFAULT_DOMAIN, comment: str = "", max_bounds: int = MAX_BOUNDS) -> Path:
    """Write S(x0) of ``threat`` (all its member boxes: one disjunctive file for a union) and the
    robustness property of a label (``n_outputs`` classes) or an ``OutputSpec`` to ``path``.

    A union writes two bounds per input that differs between members for every member: past
    ``max_bounds`` in all this is refused (``write_member_files`` writes one file per member)."""
    x0 = np.asarray(x0, dtype=np.float64)
    members = threat.n_members(x0.shape)
    free = int(np.broadcast_to(threat.perturbable(x0.shape)[None], x0.shape).sum())
    if members > 1 and 2 * members * free > max_bounds:
        raise InputError(f"{threat.spec()}: {members} member boxes x {free} perturbable inputs = {2 * members * free:,} bounds "
                         f"in one disjunctive VNN-LIB file, over the limit of {max_bounds:,}; write one file per member box "
                         f"instead (write_member_files, `stverify export --split-members`) or use a threat with fewer members")
    lo, hi = _member_arrays(threat, x0, domain)
    text = format_vnnlib(lo, hi, _output(label_or_spec, n_outputs), comment or f"stverify threat {threat.spec()}")
    path = Path(path)
    path.write_text(text)
    return path


def write_member_files(folder, stem: str, threat: Threat, x0: np.ndarray, label_or_spec, n_outputs: int | None = None,
                       domain=DEFAULT_DOMAIN, comment: str = "") -> list[Path]:
    """One VNN-LIB file per member box of S(x0), ``folder/{stem}_m{k}.vnnlib``; the property holds
    for the union iff it holds in every file (``unsat`` for all), and fails iff some file is ``sat``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lo, hi = _member_arrays(threat, x0, domain)
    output = _output(label_or_spec, n_outputs)
    width = len(str(len(lo) - 1))
    out = []
    for k in range(len(lo)):
        p = folder / f"{stem}_m{k:0{width}d}.vnnlib"
        p.write_text(format_vnnlib(lo[k:k + 1], hi[k:k + 1], output,
                                   (comment or f"stverify threat {threat.spec()}") + f"\nmember box {k} of {len(lo)}"))
        out.append(p)
    return out
