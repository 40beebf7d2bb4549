"""Bulk model building through SCIP's C API (ctypes on the library pyscipopt loads).

pyscipopt adds a linear row as a Python expression, one object per term: about 3 us a term, 8 s
for the 2.2M terms of a VVN GTSRB model.  Here every variable and every row is one call of
``SCIPcreateVarBasic`` / ``SCIPcreateConsBasicLinear`` on numpy arrays (coefficients and variable
pointers read in place, exactly, as doubles), about 10x faster; the model stays a pyscipopt
``Model``, solved, queried and freed by pyscipopt as usual.
"""
from __future__ import annotations

import ctypes
import functools
import math
import time

import numpy as np
import pyscipopt

SCIP_OKAY = 1
BINARY, CONTINUOUS = 0, 3  # SCIP_VARTYPE
CHECK_EVERY = 4096  # variables or rows added between two deadline checks

_P = ctypes.c_void_p
_PP = ctypes.POINTER(_P)
_D = ctypes.c_double


@functools.cache
def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(pyscipopt.scip.__file__)  # its symbols, and those of the libscip it links
    for name, args, res in (
            ("SCIPinfinity", [_P], _D),
            ("SCIPcreateVarBasic", [_P, _PP, ctypes.c_char_p, _D, _D, _D, ctypes.c_int], ctypes.c_int),
            ("SCIPaddVar", [_P, _P], ctypes.c_int),
            ("SCIPreleaseVar", [_P, _PP], ctypes.c_int),
            ("SCIPcreateConsBasicLinear", [_P, _PP, ctypes.c_char_p, ctypes.c_int, _P, _P, _D, _D], ctypes.c_int),
            ("SCIPaddCons", [_P, _P], ctypes.c_int),
            ("SCIPreleaseCons", [_P, _PP], ctypes.c_int)):
        f = getattr(lib, name)
        f.argtypes, f.restype = args, res
    return lib


def _scip_pointer(m: pyscipopt.Model) -> int:
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.argtypes, get.restype = [ctypes.py_object, ctypes.c_char_p], _P
    return get(m.to_ptr(False), b"scip")


def _failed(what: str):
    return RuntimeError(f"SCIP's {what} failed (SCIP_RETCODE not SCIP_OKAY)")


def add_model(m: pyscipopt.Model, model, deadline: float = math.inf) -> list | None:
    """Add the variables and rows of ``model`` (a ``MILPModel``) to the empty pyscipopt model ``m``;
    returns its pyscipopt variables in the model's order, or None once ``deadline`` (a
    ``time.perf_counter()`` instant) has passed."""
    lib, scip = _lib(), _scip_pointer(m)
    inf = lib.SCIPinfinity(scip)
    lb, ub = (np.clip(b, -inf, inf).tolist() for b in (model.lb, model.ub))
    kinds = np.where(model.is_binary, BINARY, CONTINUOUS).tolist()
    ptrs = [0] * model.n_vars
    obj = _P()
    ref = ctypes.byref(obj)
    create, add, release = lib.SCIPcreateVarBasic, lib.SCIPaddVar, lib.SCIPreleaseVar
    for k in range(model.n_vars):
        if k % CHECK_EVERY == 0 and time.perf_counter() >= deadline:
            return None
        if create(scip, ref, b"", lb[k], ub[k], 0.0, kinds[k]) != SCIP_OKAY or add(scip, obj) != SCIP_OKAY:
            raise _failed("SCIPcreateVarBasic / SCIPaddVar")
        ptrs[k] = obj.value
        release(scip, ref)
    A = model.to_csr()
    row_vars, vals = np.array(ptrs, dtype=np.uintp)[A.indices], np.ascontiguousarray(A.data, dtype=np.float64)
    vbase, vstep, dbase, dstep = row_vars.ctypes.data, row_vars.itemsize, vals.ctypes.data, vals.itemsize
    start = A.indptr.tolist()
    lo, hi = (np.clip(b, -inf, inf).tolist() for b in (model.row_lo, model.row_hi))
    create, add, release = lib.SCIPcreateConsBasicLinear, lib.SCIPaddCons, lib.SCIPreleaseCons
    for r in range(A.shape[0]):
        if r % CHECK_EVERY == 0 and time.perf_counter() >= deadline:
            return None
        s, e = start[r], start[r + 1]
        if (create(scip, ref, b"", e - s, vbase + vstep * s, dbase + dstep * s, lo[r], hi[r]) != SCIP_OKAY
                or add(scip, obj) != SCIP_OKAY):
            raise _failed("SCIPcreateConsBasicLinear / SCIPaddCons")
        release(scip, ref)
    by_pointer = {v.ptr(): v for v in m.getVars()}  # (SCIP orders them by type)
    return [by_pointer[p] for p in ptrs]
