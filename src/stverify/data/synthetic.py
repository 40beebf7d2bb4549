"""Deterministic synthetic videos and volumes written in the MedMNIST 3D ``.npz`` layout.

Each generator writes the six MedMNIST arrays (``{train,val,test}_images`` uint8 ``N x T x H x W``,
``{train,val,test}_labels`` uint8 ``N x 1``) and returns the path; the bytes depend only on the
arguments (``splits.write_splits``).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .splits import write_classes

_CHUNK = 256  # samples rendered at once; bounds the memory of the float volumes


# direction of motion per class: (dy, dx) for right, left, down, up
_DIRECTIONS = np.array([[0, 1], [0, -1], [1, 0], [-1, 0]], dtype=np.float64)


def moving_video(path, n_train, n_val, n_test, frames=4, size=10, seed=0, n_classes=4):
    """Videos ``frames x size x size`` of a Gaussian blob; class = direction (right, left, down, up).

    The blob has a random width, brightness and start, and moves 1 to 1.5 pixels per frame, so
    one frame alone does not tell the class but the motion does.
    """
    margin = 1.0
    span = size - 1 - 2 * margin  # room for the blob centre along one axis
    max_speed = min(1.5, span / (frames - 1)) if frames >= 2 else 0.0
    if max_speed < 1.0:
        raise InputError(
            f"frames={frames}, size={size}: the blob must move >= 1 pixel per frame, "
            "which needs frames >= 2 and size >= frames + 2"
        )
    grid = np.arange(size, dtype=np.float64)
    t = np.arange(frames, dtype=np.float64)

    def render(rng, labels, _split):
        n = len(labels)
        d = _DIRECTIONS[labels]  # N x 2
        speed = rng.uniform(1.0, max_speed, n)
        travel = speed * (frames - 1)
        u = rng.uniform(0.0, 1.0, (n, 2))
        start = margin + u * (span - np.abs(d) * travel[:, None]) + (d < 0) * travel[:, None]
        pos = start[:, None, :] + d[:, None, :] * (speed[:, None, None] * t[None, :, None])  # N x T x 2
        sigma = rng.uniform(0.7, 1.4, n)[:, None, None]
        peak = rng.uniform(0.55, 1.0, n)[:, None, None, None]
        background = rng.uniform(0.0, 0.1, n)[:, None, None, None]
        gy = np.exp(-((grid - pos[..., 0:1]) ** 2) / (2 * sigma**2))  # N x T x H
        gx = np.exp(-((grid - pos[..., 1:2]) ** 2) / (2 * sigma**2))  # N x T x W
        noise = rng.normal(0.0, 0.04, (n, frames, size, size))
        return background + peak * gy[..., :, None] * gx[..., None, :] + noise

    return write_classes(path, (n_train, n_val, n_test), seed, n_classes, 4, render)


def _ellipsoid(coords, centre, axes, angle, sharpness):
    """Soft ellipsoid indicator, rotated by ``angle`` in the H-W plane; arrays broadcast to N x D x H x W."""
    z, y, x = coords
    dz = (z - centre[:, 0, None, None, None]) / axes[:, 0, None, None, None]
    dy = y - centre[:, 1, None, None, None]
    dx = x - centre[:, 2, None, None, None]
    c, s = np.cos(angle)[:, None, None, None], np.sin(angle)[:, None, None, None]
    ry = (c * dy + s * dx) / axes[:, 1, None, None, None]
    rx = (c * dx - s * dy) / axes[:, 2, None, None, None]
    r = np.sqrt(dz**2 + ry**2 + rx**2)
    return 1.0 / (1.0 + np.exp(np.minimum(sharpness * (r - 1.0), 30.0)))


def organ_volumes(path, n_train, n_val, n_test, size=28, seed=0, n_classes=4):
    """Volumes ``size^3`` of an organ-like blob in a faint body; class = shape and position.

    Class 0: a sphere on the left; 1: an ellipsoid elongated along depth; 2: a flat disk;
    3: two small spheres. Sizes, positions, in-plane rotation, brightness and noise are random.
    """
    if size < 8:
        raise InputError(f"size must be >= 8, got {size}")
    s = size / 28.0  # the geometry below is given for 28^3 and scaled
    g = np.arange(size, dtype=np.float32)
    coords = (g[None, :, None, None], g[None, None, :, None], g[None, None, None, :])

    def draw_blobs(rng, labels):
        n = len(labels)
        centre = rng.uniform(9, 18, (n, 2, 3))
        axes = np.repeat(rng.uniform(4.0, 5.5, (n, 2, 1)), 3, axis=2) * rng.uniform(0.9, 1.1, (n, 2, 3))
        angle = rng.uniform(0, np.pi, (n, 2))
        peak = rng.uniform(0.55, 0.9, (n, 2))
        # class 0: sphere on the left
        centre[labels == 0, :, 2] = rng.uniform(7, 11, (np.sum(labels == 0), 2))
        # class 1: elongated along depth
        m = labels == 1
        centre[m, :, 0] = rng.uniform(12, 15, (m.sum(), 2))
        axes[m] = np.stack([rng.uniform(8, 10.5, (m.sum(), 2)), *rng.uniform(2.5, 3.5, (2, m.sum(), 2))], -1)
        # class 2: flat disk
        m = labels == 2
        axes[m] = np.stack([rng.uniform(1.8, 2.5, (m.sum(), 2)), *rng.uniform(5.5, 7.5, (2, m.sum(), 2))], -1)
        # class 3: two small spheres 10-12 voxels apart, side by side rather than along depth
        m = labels == 3
        k = m.sum()
        v = rng.normal(size=(k, 3)) * [0.3, 1.0, 1.0]
        offset = v / np.linalg.norm(v, axis=1, keepdims=True) * rng.uniform(10, 12, (k, 1))
        mid = rng.uniform(11, 16, (k, 3))
        centre[m] = np.stack([mid - offset / 2, mid + offset / 2], axis=1)
        axes[m] = rng.uniform(3.0, 4.0, (k, 2, 1)) * rng.uniform(0.9, 1.1, (k, 2, 3))
        peak[labels != 3, 1] = 0.0  # one blob for classes 0-2
        f32 = np.float32
        return (centre * s).astype(f32), (axes * s).astype(f32), angle.astype(f32), peak.astype(f32)

    def render(rng, labels, _split):
        n = len(labels)
        centre, axes, angle, peak = draw_blobs(rng, labels)
        body_centre = ((13.5 + rng.uniform(-1, 1, (n, 3))) * s).astype(np.float32)
        body_axes = np.stack([np.full(n, 14.0), rng.uniform(9.5, 11.5, n), rng.uniform(11.5, 13, n)], axis=1)
        body_axes = (body_axes * s).astype(np.float32)
        body_peak = rng.uniform(0.12, 0.22, n).astype(np.float32)
        out = np.empty((n, size, size, size), dtype=np.float32)
        for a in range(0, n, _CHUNK):
            b = slice(a, min(a + _CHUNK, n))
            body = _ellipsoid(coords, body_centre[b], body_axes[b], np.zeros(b.stop - a, np.float32), 8.0)
            vol = body_peak[b, None, None, None] * body
            for j in range(2):
                organ = _ellipsoid(coords, centre[b, j], axes[b, j], angle[b, j], 5.0)
                vol = np.maximum(vol, peak[b, j, None, None, None] * organ)
            out[b] = vol + np.float32(0.03) * rng.standard_normal(vol.shape, dtype=np.float32)
        return out

    return write_classes(path, (n_train, n_val, n_test), seed, n_classes, 4, render)
