"""Driving clips in the Udacity layout: road scenes seen from the car, and the steering they call for.

A clip is ``frames`` images ``size x size`` of a road ahead: sky above a horizon (height, colours and
light vary), textured grass on both sides, a dark grey road narrowing with distance, solid white edge
lines and a dashed yellow centre line whose dashes stream towards the camera, and now and then
another car (a box on the road ahead, drifting in depth). The road bends: on the ground row at
perspective depth ``d`` (1 at the bottom edge, 0 at the horizon) its centre sits at column
``road_centre(d, k, offset) = 0.5 + offset * d + BEND * k * (1 - d)^2`` (image widths), so a
curvature ``k > 0`` bends it right towards the horizon. The curvature changes linearly over the
clip, from ``k_start`` to ``k_end``, both uniform in [-1, 1] (entering, leaving or tightening a bend).

The target is the steering the last frame calls for, normalised to [-1, 1] as Udacity's angle
(negative left, positive right): ``k_end`` plus Gaussian noise (std ``STEER_NOISE``), clipped.
Channels: 3 is RGB, 1 luminance, 2 luminance and its change since the previous frame
(``0.5 + (L_t - L_{t-1}) / 2``; 0.5 in the first frame), a motion channel as steering models use.
Images are float32 in [0, 1], stored channel-last ``N x T x H x W x C`` with ``layout = nthwC``;
targets float32 ``N x 1``.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .splits import write_splits

BEND = 0.55  # road centre shift at the horizon for |curvature| 1, in image widths
STEER_NOISE = 0.03
CAR_PROBABILITY = 0.35
SUPERSAMPLE = 3  # rendered at 3x the size and averaged: thin lines become partial intensities
_CHUNK = 128
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _soft(signed_distance, width):
    """1 inside (distance < 0), 0 outside, a ramp ``width`` wide."""
    return np.clip(0.5 - signed_distance / width, 0.0, 1.0)


def road_centre(d, curvature, offset):
    """Column (in image widths) of the road's centre on the ground row at perspective depth ``d``."""
    return 0.5 + offset * d + BEND * curvature * (1 - d) ** 2


def _each(a: np.ndarray) -> np.ndarray:
    """One value per clip (N) as N x 1 x 1 x 1, to broadcast over frames, rows and columns."""
    return a[:, None, None, None]


def _draw_scenes(rng, n: int, frames: int) -> dict:
    """The random parameters of ``n`` clips (each a float32 array, N first)."""
    t = np.linspace(0.0, 1.0, frames, dtype=np.float32)
    k_start, k_end = rng.uniform(-1, 1, (2, n)).astype(np.float32)
    u = rng.uniform(size=(n, 16)).astype(np.float32)
    car = rng.uniform(size=n) < CAR_PROBABILITY
    return {
        "curvature": k_start[:, None] + (k_end - k_start)[:, None] * t[None],  # N x T
        "k_end": k_end,
        "horizon": 0.3 + 0.1 * u[:, 0],
        "offset": 0.06 * (2 * u[:, 1] - 1),  # the car's place in its lane
        "road_width": 0.42 + 0.16 * u[:, 2],  # half width at the bottom edge, image widths
        "road_grey": 0.22 + 0.13 * u[:, 3],
        "light": 0.75 + 0.3 * u[:, 4],
        "sky": np.stack([0.35 + 0.2 * u[:, 5], 0.55 + 0.2 * u[:, 5], 0.8 + 0.15 * u[:, 6]], 1),
        "grass": np.stack([0.2 + 0.15 * u[:, 7], 0.45 + 0.2 * u[:, 8], 0.12 + 0.1 * u[:, 7]], 1),
        "dash_phase": u[:, 9],
        "speed": 0.25 + 0.35 * u[:, 10],  # dash periods per frame
        "car_depth": np.where(car, 0.25 + 0.35 * u[:, 11], -1.0),  # d of the car's base; < 0: no car
        "car_drift": 0.08 * (2 * u[:, 12] - 1),  # change of its depth per frame
        "car_lane": np.where(u[:, 13] < 0.5, -0.5, 0.5),  # left or right lane
        "car_colour": np.stack([u[:, 14], u[:, 15], 1 - u[:, 14]], 1) * 0.7,
    }


def _render(p: dict, sl: slice, frames: int, size: int, rng) -> np.ndarray:
    """RGB clips ``N x T x size x size x 3`` in [0, 1] of the scenes ``p[...][sl]``."""
    q = {k: v[sl] for k, v in p.items()}
    n, s = len(q["k_end"]), size * SUPERSAMPLE
    g = (np.arange(s, dtype=np.float32) + 0.5) / s
    v, col = g[:, None], g[None, :]  # rows, columns in [0, 1]
    hz = _each(q["horizon"])
    d = np.clip((v[None, None] - hz) / (1 - hz), 0.0, 1.0)  # N x 1 x s x 1, 0 at the horizon
    ground = _soft(hz - v[None, None], 1.5 / s)
    bend = q["curvature"][:, :, None, None]  # N x T x 1 x 1
    centre = road_centre(d, bend, _each(q["offset"]))  # N x T x s x 1
    dist = np.abs(col[None, None] - centre)
    half = _each(q["road_width"]) * d
    pixel = 1.0 / s
    road = _soft(dist - half, pixel) * ground
    line_w = np.maximum(0.035 * d, 0.3 * pixel)
    edge = _soft(np.abs(dist - half) - line_w / 2, pixel) * ground
    depth = 1.0 / (d + 0.12)  # distance along the road, up to a scale
    t = np.arange(frames, dtype=np.float32)[None, :, None, None]
    dashes = np.cos(2 * np.pi * (0.35 * depth + _each(q["dash_phase"]) + _each(q["speed"]) * t)) > 0
    centre_line = _soft(dist - line_w / 2, pixel) * dashes * ground
    grass_tex = 1 + 0.25 * rng.standard_normal((n, 1, s, s), dtype=np.float32)
    sky_shade = 0.85 + 0.3 * v[None, None] / hz  # lighter towards the horizon
    rgb = np.empty((n, frames, s, s, 3), dtype=np.float32)
    for c in range(3):
        sky = q["sky"][:, c, None, None, None] * sky_shade
        grass = q["grass"][:, c, None, None, None] * grass_tex
        img = sky * (1 - ground) + grass * ground
        img = img * (1 - road) + _each(q["road_grey"]) * road
        img = img * (1 - edge) + 0.9 * edge
        img = img * (1 - centre_line) + (0.9, 0.8, 0.2)[c] * centre_line
        rgb[..., c] = img
    car_d = _each(q["car_depth"]) + _each(q["car_drift"]) * t  # N x T x 1 x 1
    car_c = road_centre(car_d, bend, _each(q["offset"])) + _each(q["car_lane"] * q["road_width"]) * car_d
    car_v = hz + car_d * (1 - hz)  # the row of its base
    car_w = 0.45 * _each(q["road_width"]) * car_d
    car = (_soft(np.abs(col[None, None] - car_c) - car_w, pixel) * _soft(v[None, None] - car_v, pixel)
           * _soft(car_v - 1.1 * car_w - v[None, None], pixel) * (car_d > 0.05))
    rgb = rgb * (1 - car[..., None]) + q["car_colour"][:, None, None, None, :] * car[..., None]
    rgb = rgb.reshape(n, frames, size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(3, 5))
    return rgb * q["light"][:, None, None, None, None]


def _channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    """RGB ``... x 3`` clips as ``channels`` channels (module docstring)."""
    if channels == 3:
        return rgb
    luma = rgb @ _LUMA
    if channels == 1:
        return luma[..., None]
    change = np.concatenate([np.zeros_like(luma[:, :1]), np.diff(luma, axis=1)], axis=1)
    return np.stack([luma, 0.5 + change / 2], axis=-1)


def driving_clips(path, n_train, n_val, n_test, frames=4, size=16, channels=3, seed=0):
    """Write road clips and their steering targets (module docstring); the path."""
    if channels not in (1, 2, 3):
        raise InputError(f"channels must be 1 (luminance), 2 (luminance, its change) or 3 (RGB), got {channels}")
    if frames < 2 or size < 8:
        raise InputError(f"a driving clip needs frames >= 2 and size >= 8, got frames={frames}, size={size}")

    def draw(rng, n, _split):
        p = _draw_scenes(rng, n, frames)
        clips = np.empty((n, frames, size, size, channels), dtype=np.float32)
        for a in range(0, n, _CHUNK):
            sl = slice(a, min(a + _CHUNK, n))
            rgb = _render(p, sl, frames, size, rng)
            clips[sl] = _channels(rgb + 0.02 * rng.standard_normal(rgb.shape, dtype=np.float32), channels)
        steer = np.clip(p["k_end"] + STEER_NOISE * rng.standard_normal(n, dtype=np.float32), -1, 1)
        return np.clip(clips, 0, 1), steer.astype(np.float32).reshape(-1, 1)

    return write_splits(path, (n_train, n_val, n_test), seed, draw, layout="nthwC")
