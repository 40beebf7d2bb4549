"""Action clips of real handwriting: the digits scikit-learn ships, zoomed or moved over the frames.

As in the VVN benchmark's zoom-in / zoom-out / moving-digit videos, each clip shows one of
scikit-learn's 1,797 handwritten digits (8 x 8 scans from 43 writers, ``load_digits``; bundled with
the package, nothing downloaded) on a dark ``size x size`` frame. The class is the motion, the
action, not the digit, so that no single frame tells it:

    0 zoom in    the digit grows from ~0.9 to ~1.8 times its 8-pixel side, centred
    1 zoom out   the same, backwards
    2 move right at 1.1 to 1.4 times its side, from left to right, 0.7 to 1 pixel per frame
    3 move left  the same, backwards

Each class is another class played backwards, so the frames of a clip, as a set, say nothing about
it: only their order does (four classes keep the exact verification of a classifier small). The
digit, its centre, brightness and background are random, with pixel noise. The splits draw their
digits from disjoint parts of scikit-learn's images (index mod 5: 0-2 train, 3 val, 4 test), so the
test clips show handwriting the training clips never saw. Stored as MedMNIST: uint8
``N x T x H x W``, labels uint8 ``N x 1``.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .splits import write_classes

CLASSES = ("zoom in", "zoom out", "move right", "move left")
_POOL = {"train": (0, 1, 2), "val": (3,), "test": (4,)}  # digit index mod 5 -> split


def digit_pool(split: str) -> np.ndarray:
    """scikit-learn's digit images of ``split`` (``_POOL``), float ``K x 8 x 8`` in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise InputError("the 'action' dataset draws on the digits scikit-learn ships: pip install scikit-learn") from None
    images = load_digits().images / 16.0
    return images[np.isin(np.arange(len(images)) % 5, _POOL[split])]


def digit_actions(path, n_train, n_val, n_test, frames=8, size=16, seed=0, n_classes=4):
    """Write digit action clips (module docstring); the path."""
    if frames < 4 or size < 12:
        raise InputError(f"digit actions need frames >= 4 and size >= 12, got frames={frames}, size={size}")
    t = np.linspace(0.0, 1.0, frames)[None, :]
    centre = (size - 1) / 2

    def render(rng, labels, split):
        n = len(labels)
        pool = digit_pool(split)
        digit = rng.integers(0, len(pool), n)
        forward = np.where(labels[:, None] % 2 == 0, t, 1 - t)  # classes 1 and 3 play 0 and 2 backwards
        small, large = rng.uniform(0.85, 1.0, (n, 1)), rng.uniform(1.6, 1.9, (n, 1))
        moving = labels[:, None] >= 2
        scale = np.where(moving, rng.uniform(1.1, 1.4, (n, 1)), small * (large / small) ** forward)  # N x T
        travel = rng.uniform(0.7, 1.0, (n, 1)) * (frames - 1) * (forward - 0.5)
        cx = centre + rng.uniform(-1, 1, (n, 1)) + np.where(moving, travel, 0.0)
        cy = np.broadcast_to(centre + rng.uniform(-1, 1, (n, 1)), (n, frames))
        g = np.arange(size, dtype=np.float64)
        rows = (g[None, None, :, None] - cy[..., None, None]) / scale[..., None, None] + 3.5  # N x T x H x 1
        cols = (g[None, None, None, :] - cx[..., None, None]) / scale[..., None, None] + 3.5  # N x T x 1 x W
        shape = (n, frames, size, size)
        coords = [np.broadcast_to(digit[:, None, None, None], shape), np.broadcast_to(rows, shape),
                  np.broadcast_to(cols, shape)]
        from scipy.ndimage import map_coordinates  # here: importing the data package costs no scipy

        ink = map_coordinates(pool, coords, order=1, mode="grid-constant", cval=0.0)
        peak = rng.uniform(0.7, 1.0, n)[:, None, None, None]
        background = rng.uniform(0.0, 0.1, n)[:, None, None, None]
        return background + (peak - background) * ink + rng.normal(0.0, 0.03, shape)

    return write_classes(path, (n_train, n_val, n_test), seed, n_classes, len(CLASSES), render)
