"""Bulk model building through SCIP's C API (ctypes on the library pyscipopt loads).

pyscipopt adds a linear row as a Python expression, one object per term: about 1-3 us a term, 3-8 s
for the 2.2M terms of a VVN GTSRB model.  Here the variables and the rows are created, added and
released by ``SCIPcreateVarBasic`` / ``SCIPcreateConsBasicLinear``, ``SCIPaddVar`` /
``SCIPaddCons`` and ``SCIPrelease*``, each mapped over a block of them (``map`` calls the
function from C: no Python loop per row), reading the coefficients and variable pointers in place,
exactly, as doubles; the model stays a pyscipopt ``Model``, solved, queried and freed as usual,
but its variables are known by their pointers (``set_objective``, ``solution``): pyscipopt's
``getVars`` costs 6 us a variable.
"""
from __future__ import annotations

import ctypes
import functools
import math
import time
from itertools import repeat

import numpy as np
import pyscipopt

SCIP_OKAY = 1
BINARY, CONTINUOUS = 0, 3  # SCIP_VARTYPE
CHECK_EVERY = 4096  # variables or rows added between two deadline checks

_P = ctypes.c_void_p
_D = ctypes.c_double


@functools.cache
def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(pyscipopt.scip.__file__)  # its symbols, and those of the libscip it links
    for name, args, res in (
            ("SCIPinfinity", [_P], _D),
            # (every SCIP_VAR** / SCIP_CONS** argument is the address of a slot of a numpy array)
            ("SCIPcreateVarBasic", [_P, _P, ctypes.c_char_p, _D, _D, _D, ctypes.c_int], ctypes.c_int),
            ("SCIPaddVar", [_P, _P], ctypes.c_int),
            ("SCIPreleaseVar", [_P, _P], ctypes.c_int),
            ("SCIPcreateConsBasicLinear", [_P, _P, ctypes.c_char_p, ctypes.c_int, _P, _P, _D, _D], ctypes.c_int),
            ("SCIPaddCons", [_P, _P], ctypes.c_int),
            ("SCIPreleaseCons", [_P, _P], ctypes.c_int),
            ("SCIPchgVarObj", [_P, _P, _D], ctypes.c_int),
            ("SCIPgetBestSol", [_P], _P),
            ("SCIPgetSolVals", [_P, _P, ctypes.c_int, _P, _P], ctypes.c_int)):
        f = getattr(lib, name)
        f.argtypes, f.restype = args, res
    return lib


def _scip_pointer(m: pyscipopt.Model) -> int:
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.argtypes, get.restype = [ctypes.py_object, ctypes.c_char_p], _P
    return get(m.to_ptr(False), b"scip")


def _add(scip: int, create, add, release, args: list[list], deadline: float, what: str) -> list[int] | None:
    """Create, add and release one object per row of ``args`` (the arguments of ``create`` after the
    SCIP pointer and the out slot), in blocks of CHECK_EVERY; their pointers, or None once
    ``deadline`` has passed."""
    n = len(args[0])
    slots = np.zeros(n, dtype=np.uintp)
    where = (slots.ctypes.data + slots.itemsize * np.arange(n, dtype=np.uint64)).tolist()
    for a in range(0, n, CHECK_EVERY):
        if time.perf_counter() >= deadline:  # (the blocks made so far belong to the problem: nothing to release)
            return None
        b = min(n, a + CHECK_EVERY)
        part = slice(a, b)
        if any(c != SCIP_OKAY for c in map(create, repeat(scip, b - a), where[part], repeat(b"", b - a),
                                            *(c[part] for c in args))):
            raise RuntimeError(f"SCIP's {what} failed (SCIP_RETCODE not SCIP_OKAY)")
        made = slots[part].tolist()
        if any(c != SCIP_OKAY for c in map(add, repeat(scip, b - a), made)):
            raise RuntimeError(f"SCIP's {what} failed (SCIP_RETCODE not SCIP_OKAY)")
        list(map(release, repeat(scip, b - a), where[part]))  # (the problem keeps its own reference)
        slots[part] = made  # (released slots read NULL)
    return slots.tolist()


def add_model(m: pyscipopt.Model, model, deadline: float = math.inf) -> np.ndarray | None:
    """Add the variables and rows of ``model`` (a ``MILPModel``) to the empty pyscipopt model ``m``;
    returns the pointers of its variables in the model's order (for ``set_objective`` and
    ``solution``), or None once ``deadline`` (a ``time.perf_counter()`` instant) has passed
    (checked every CHECK_EVERY variables or rows)."""
    lib, scip = _lib(), _scip_pointer(m)
    inf = lib.SCIPinfinity(scip)
    clip = lambda b: np.clip(b, -inf, inf).tolist()  # noqa: E731 - SCIP's infinity
    n = model.n_vars
    ptrs = _add(scip, lib.SCIPcreateVarBasic, lib.SCIPaddVar, lib.SCIPreleaseVar,
                [clip(model.lb), clip(model.ub), [0.0] * n, np.where(model.is_binary, BINARY, CONTINUOUS).tolist()],
                deadline, "SCIPcreateVarBasic / SCIPaddVar")
    if ptrs is None:
        return None
    ptrs = np.array(ptrs, dtype=np.uintp)
    A = model.to_csr()
    row_vars, vals = ptrs[A.indices], np.ascontiguousarray(A.data, dtype=np.float64)
    first = A.indptr[:-1].astype(np.uint64)
    rows = _add(scip, lib.SCIPcreateConsBasicLinear, lib.SCIPaddCons, lib.SCIPreleaseCons,
                [np.diff(A.indptr).tolist(), (row_vars.ctypes.data + row_vars.itemsize * first).tolist(),
                 (vals.ctypes.data + vals.itemsize * first).tolist(), clip(model.row_lo), clip(model.row_hi)],
                deadline, "SCIPcreateConsBasicLinear / SCIPaddCons")
    return None if rows is None else ptrs


def set_objective(m: pyscipopt.Model, ptrs: np.ndarray, coef: np.ndarray, const: float) -> None:
    """Minimise const + <coef, x> (over the variables ``ptrs`` of ``add_model``)."""
    m.setObjective(float(const), "minimize")  # (clears every coefficient, in C)
    lib, scip, nz = _lib(), _scip_pointer(m), np.flatnonzero(coef)
    if any(c != SCIP_OKAY for c in map(lib.SCIPchgVarObj, repeat(scip, len(nz)), ptrs[nz].tolist(), coef[nz].tolist())):
        raise RuntimeError("SCIP's SCIPchgVarObj failed (SCIP_RETCODE not SCIP_OKAY)")


def solution(m: pyscipopt.Model, ptrs: np.ndarray) -> np.ndarray | None:
    """The values of the variables ``ptrs`` in the best solution found, or None."""
    lib, scip = _lib(), _scip_pointer(m)
    sol = lib.SCIPgetBestSol(scip)
    if not sol:
        return None
    ptrs = np.ascontiguousarray(ptrs, dtype=np.uintp)
    vals = np.empty(len(ptrs))
    if lib.SCIPgetSolVals(scip, sol, len(ptrs), ptrs.ctypes.data, vals.ctypes.data) != SCIP_OKAY:
        raise RuntimeError("SCIP's SCIPgetSolVals failed (SCIP_RETCODE not SCIP_OKAY)")
    return vals
