"""How a generated dataset is written: three splits, each from its own random stream.

Every split ``k`` (train, val, test) draws from ``default_rng([seed, k])``, so its bytes depend only
on the generator's arguments; ``write_npz`` fixes the archive's timestamps.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import InputError
from .archive import write_npz

SPLITS = ("train", "val", "test")


def write_splits(path, sizes, seed: int, draw: Callable, layout: str | None = None):
    """Write ``{split}_images`` / ``{split}_labels`` = ``draw(rng, n, split)`` for the three splits
    of ``sizes`` samples (and the ``layout`` the images are stored in, when given); the path."""
    arrays = {}
    for k, (split, n) in enumerate(zip(SPLITS, sizes)):
        if n < 0:
            raise InputError(f"n_{split} must be >= 0, got {n}")
        images, labels = draw(np.random.default_rng([seed, k]), n, split)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    if layout is not None:
        arrays["layout"] = np.array(layout)
    return write_npz(path, arrays)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as uint8 (rounded, clipped), as MedMNIST stores them."""
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


def write_classes(path, sizes, seed: int, n_classes: int, max_classes: int, render: Callable):
    """A classification dataset in the MedMNIST layout: balanced uint8 labels ``N x 1`` (a random
    permutation of 0, 1, ..., n_classes - 1 repeated), images ``render(rng, labels, split)`` (floats
    in [0, 1], ``N x T x H x W``) stored as uint8."""
    if not 2 <= n_classes <= max_classes:
        raise InputError(f"n_classes must be in 2..{max_classes}, got {n_classes}")

    def draw(rng, n, split):
        labels = rng.permutation(np.arange(n) % n_classes).astype(np.uint8)
        return to_uint8(render(rng, labels, split)), labels.reshape(-1, 1)

    return write_splits(path, sizes, seed, draw)
