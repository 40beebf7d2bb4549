"""Loader for MedMNIST 3D ``.npz`` files, exactly as published.

A file holds six arrays: ``{train,val,test}_images`` (uint8, ``N x D x H x W``, 28^3 or 64^3)
and ``{train,val,test}_labels`` (integers, ``N x 1``). Images become float64 in ``[0, 1]`` with
a channel axis, ``N x 1 x T x H x W``; the depth axis is ``T``.  Anything else (a missing file, a
foreign archive, wrong dtypes or shapes, negative labels, an index out of range) is refused with an
``InputError`` naming the file and the array.
"""

from __future__ import annotations

import operator
import os
import zipfile

import numpy as np

from ..errors import InputError

SPLITS = ("train", "val", "test")
KEYS = tuple(f"{s}_{part}" for s in SPLITS for part in ("images", "labels"))


def _is_npy(path) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == b"\x93NUMPY"


def _open(path):
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
        raise InputError(f"{os.fspath(path)!r} is a single .npy array, expected a MedMNIST .npz archive")
    return npz


def _get(npz, path, key):
    if key not in npz.files:
        raise InputError(
            f"{os.fspath(path)!r} has no array {key!r}; found {sorted(npz.files)}, "
            f"expected the MedMNIST keys {list(KEYS)}"
        )
    return npz[key]


def _split_arrays(path, split):
    """The raw (images, labels) of one split, validated; labels flattened to int64."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {list(SPLITS)}, got {split!r}")
    with _open(path) as npz:
        images = _get(npz, path, f"{split}_images")
        labels = _get(npz, path, f"{split}_labels")
    if images.dtype != np.uint8 or images.ndim != 4:
        raise InputError(
            f"{split}_images in {os.fspath(path)!r} has dtype {images.dtype} and shape {images.shape}; "
            "expected uint8 N x D x H x W"
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (len(images), 1):
        raise InputError(
            f"{split}_labels in {os.fspath(path)!r} has dtype {labels.dtype} and shape {labels.shape}; "
            f"expected integers of shape ({len(images)}, 1)"
        )
    labels = labels.reshape(-1).astype(np.int64)
    if len(labels) and labels.min() < 0:
        i = int(np.argmin(labels))
        raise InputError(f"{split}_labels in {os.fspath(path)!r} holds the negative label {labels[i]} (sample {i}); "
                         "labels are class indices 0, 1, ...")
    return images, labels


def _to_float(images):
    return (images.astype(np.float64) / 255.0)[..., None, :, :, :]


def load_npz(path, split="test"):
    """Load one split: ``X`` float64 ``N x 1 x T x H x W`` in ``[0, 1]``, ``y`` int64 ``N``."""
    images, labels = _split_arrays(path, split)
    return _to_float(images), labels


def load_sample(path, split="test", index=0):
    """Load one sample: ``x`` float64 ``1 x T x H x W`` in ``[0, 1]`` and its label ``y`` (int)."""
    images, labels = _split_arrays(path, split)
    try:
        i = operator.index(index)
    except TypeError:
        raise InputError(f"index must be an integer, got {index!r}") from None
    if not 0 <= i < len(images):
        raise InputError(
            f"index {i} out of range for split {split!r} of {os.fspath(path)!r} "
            f"with {len(images)} samples (valid: 0..{len(images) - 1})"
        )
    return _to_float(images[i]), int(labels[i])
