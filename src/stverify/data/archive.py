"""``.npz`` archives, read without unpickling and written byte-for-byte reproducibly.

Reading refuses, with an ``InputError`` naming the file (and the array), a missing file, a folder,
anything that is not a zip archive of ``.npy`` arrays, a single ``.npy`` array, and an array of
Python objects (which only unpickling could read: stverify never unpickles data).
"""
from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError


def _is_npy(path) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == b"\x93NUMPY"


def open_npz(path) -> np.lib.npyio.NpzFile:
    """The archive at ``path``, opened lazily (arrays are read by ``read_array``)."""
    if not os.path.isfile(path):
        what = "is a directory, not a file" if os.path.isdir(path) else "not found"
        raise InputError(f"dataset file {what}: {os.fspath(path)!r}")
    if not zipfile.is_zipfile(path) and not _is_npy(path):
        raise InputError(f"{os.fspath(path)!r} is not an .npz archive (not a zip file)")
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise InputError(f"{os.fspath(path)!r} is not a readable .npz archive: {e}") from e
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise InputError(f"{os.fspath(path)!r} is a single .npy array, expected an .npz archive of named arrays")
    return npz


def read_array(npz: np.lib.npyio.NpzFile, path, key: str) -> np.ndarray:
    """The array ``key`` of an open archive; an object array (pickled) or a damaged member is refused."""
    try:
        return npz[key]
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InputError(f"array {key!r} in {os.fspath(path)!r} holds Python objects (a pickled object array); "
                             "stverify reads numeric arrays only and never unpickles data") from None
        raise InputError(f"array {key!r} in {os.fspath(path)!r} cannot be read: {e}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise InputError(f"array {key!r} in {os.fspath(path)!r} cannot be read (damaged archive): {e}") from None


def write_npz(path, arrays: dict) -> Path:
    """Write ``arrays`` as an .npz with fixed timestamps, atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w") as zf:  # stored uncompressed, like np.savez
            for key, arr in arrays.items():
                info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                with zf.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asarray(arr, order="C"), allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
