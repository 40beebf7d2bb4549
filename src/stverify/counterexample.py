"""Saved counterexamples: one self-contained ``.npz`` each, and a per-frame picture of it.

``save`` writes the arrays ``x0`` (the clean input, C x T x H x W), ``counterexample`` (x'),
``label``, ``threat`` (its spec), ``member`` (JSON text: the member of the threat set that holds
x', i.e. the frames it changes, and for patches the placement ``t0, y, x, h, w``), ``frames`` (the
member's frames as integers) and ``info`` (JSON text: model, method, ...; given the network, also
``predicted``, the class the float64 reference gives x', and ``margin_float64`` / ``margin_float32``,
logit_label - max_{j != label} logit_j at x' in the reference and the float32 model).  Nothing in
it needs pickle: ``np.load(path)`` reads it.  ``render`` draws, for every frame shown, x0, x' and
x' - x0 one above the other (channel ``channel``), the member's frames and patch outlined, under a
title naming the label, the predicted class and the margins.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import InputError
from .threats import AnyFrames, AnyPatch, Frames, Patch, Threat, parse_threat

CHANGED_TOL = 1e-12  # a voxel moved by more than this counts as changed
MAX_FRAMES_SHOWN = 12


def member(threat: Threat, x0: np.ndarray, x1: np.ndarray) -> dict:
    """The member of S(x0) holding x1: {"frames": [...]} plus, for patches, t0, y, x, h, w."""
    changed = np.any(np.abs(np.asarray(x1) - np.asarray(x0)) > CHANGED_TOL, axis=0)  # T x H x W
    if isinstance(threat, AnyFrames):
        return {"frames": [int(t) for t in np.flatnonzero(changed.any(axis=(1, 2)))]}
    if isinstance(threat, Frames):
        return {"frames": sorted(set(int(t) for t in threat.frames))}
    if isinstance(threat, Patch):
        return {"frames": list(range(threat.t[0], threat.t[1] + 1)), "t0": threat.t[0], "y": threat.y, "x": threat.x,
                "h": threat.h, "w": threat.w}
    if isinstance(threat, AnyPatch):
        p = threat.placements(x0.shape)
        if changed.any():
            idx = np.argwhere(changed)
            size = np.array([threat.len, threat.h, threat.w])
            p = p[np.all((p <= idx.min(0)) & (p + size - 1 >= idx.max(0)), axis=1)]
        t0, y, x = (int(v) for v in p[0])
        return {"frames": list(range(t0, t0 + threat.len)), "t0": t0, "y": y, "x": x, "h": threat.h, "w": threat.w}
    return {"frames": list(range(x0.shape[1]))}


def save(path, x0: np.ndarray, x1: np.ndarray, label, threat: Threat, net=None, **info) -> Path:
    """Write the counterexample file described in the module docstring (the predicted class and the
    margins when the network ``net`` is given); returns its path.  ``label``: the class, or an output
    property (``properties.OutputSpec``, recorded as label -1; its text goes in ``info["property"]``)."""
    from .replay import replay

    path = Path(path)
    x0, x1 = np.asarray(x0, dtype=np.float64), np.asarray(x1, dtype=np.float64)
    m = member(threat, x0, x1)
    if net is not None:
        rep = replay(net, x0, label, threat, x1)
        info.update(predicted=int(net.predict(x1)), margin_float64=rep.margin64, margin_float32=rep.margin32)
    with open(path, "wb") as f:  # an open file: numpy appends nothing to the name
        np.savez_compressed(f, x0=x0, counterexample=x1, label=np.int64(label if isinstance(label, (int, np.integer)) else -1),
                            threat=np.array(threat.spec()),
                            member=np.array(json.dumps(m)), frames=np.array(m["frames"], dtype=np.int64),
                            info=np.array(json.dumps(info, default=str)))
    return path


def load(path) -> dict:
    """The contents of a counterexample file (x0, counterexample, label, threat, member, frames, info)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        out = {"x0": d["x0"], "counterexample": d["counterexample"], "label": int(d["label"]),
               "threat": parse_threat(str(d["threat"])), "member": json.loads(str(d["member"])),
               "frames": [int(t) for t in d["frames"]], "info": json.loads(str(d.get("info", "{}")))}
    except (OSError, ValueError, KeyError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: not a stverify counterexample file ({type(e).__name__}: {e})") from None
    if out["x0"].shape != out["counterexample"].shape or out["x0"].ndim != 4:
        raise InputError(f"{path}: x0 {out['x0'].shape} and counterexample {out['counterexample'].shape} must be "
                         "C x T x H x W arrays of one shape")
    return out


def title(d: dict) -> str:
    """The picture's title: the threat, the label, the predicted class and the margins (as recorded)."""
    info = d["info"]
    text = f"{d['threat'].spec()}: " + (f"property {info['property']}, " if "property" in info else f"label {d['label']}, ")
    text += f"predicted {info['predicted']}" if "predicted" in info else "predicted class not recorded"
    margins = [f"{name} {info[key]:.4g}" for name, key in (("float64", "margin_float64"), ("float32", "margin_float32"))
               if isinstance(info.get(key), float)]
    if not margins and isinstance(info.get("margin"), float):  # a file saved without the network
        margins = [f"{info['margin']:.4g}"]
    return text + (f" (margin {', '.join(margins)})" if margins else "") + "\n* = frames of the chosen member"


def _image_file(out) -> Path:
    """``out`` checked before drawing: a writable file name with a format matplotlib can write."""
    from matplotlib.figure import Figure

    from .validation import output_file

    out = output_file(out, "--out")
    formats = Figure().canvas.get_supported_filetypes()
    if out.suffix and out.suffix[1:].lower() not in formats:
        raise InputError(f"--out {str(out)!r}: unknown image format {out.suffix!r}; expected one of "
                         f"{', '.join('.' + f for f in sorted(formats))}")
    return out


def render(path, out=None, channel: int = 0, frames=None) -> Path:
    """Draw the file at ``path`` (module docstring) into ``out`` (default: beside it, .png).
    ``frames``: which frames to show (default all, or the changed ones and their neighbours
    when there are more than MAX_FRAMES_SHOWN)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    d = load(path)
    out = _image_file(Path(path).with_suffix(".png") if out is None else out)
    x0, x1, m = d["x0"], d["counterexample"], d["member"]
    if not 0 <= channel < x0.shape[0]:
        raise InputError(f"channel {channel} out of range: the input has {x0.shape[0]} channel(s)")
    a, b = x0[channel], x1[channel]
    T = a.shape[0]
    shown = list(range(T)) if frames is None else sorted(set(int(t) for t in frames))
    if frames is None and T > MAX_FRAMES_SHOWN:
        keep = set()
        for t in m["frames"]:
            keep.update(range(max(t - 1, 0), min(t + 2, T)))
        shown = sorted(keep)[:MAX_FRAMES_SHOWN] or shown[:MAX_FRAMES_SHOWN]
    if not shown or min(shown) < 0 or max(shown) >= T:
        raise InputError(f"frames must lie in 0..{T - 1}, got {frames}")
    delta = b - a
    lim = float(np.abs(delta).max()) or 1.0
    fig, axes = plt.subplots(3, len(shown), figsize=(1.6 * len(shown) + 1.2, 5.2), squeeze=False)
    rows = (("x0", a, "gray", 0.0, 1.0), ("x'", b, "gray", 0.0, 1.0), ("x' - x0", delta, "RdBu_r", -lim, lim))
    for r, (name, img, cmap, lo, hi) in enumerate(rows):
        for c, t in enumerate(shown):
            ax = axes[r, c]
            im = ax.imshow(img[t], cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {t}" + (" *" if t in m["frames"] else ""), fontsize=9)
            if c == 0:
                ax.set_ylabel(name)
            if "y" in m and t in m["frames"]:
                ax.add_patch(Rectangle((m["x"] - 0.5, m["y"] - 0.5), m["w"], m["h"], fill=False, edgecolor="orange", lw=1.2))
        fig.colorbar(im, ax=list(axes[r]), fraction=0.02, pad=0.01)
    fig.suptitle(title(d), fontsize=10)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def cmd_render(args) -> int:
    out = render(args.file, args.out, args.channel, args.frames)
    print(f"wrote {out}")
    return 0


def register(sub) -> None:
    r = sub.add_parser("render", help="draw a saved counterexample frame by frame (x0, x', x' - x0)",
                       description="Draw a counterexample saved by `stverify verify --save-counterexample FILE.npz`: "
                                   "for each frame the clean input x0, the counterexample x' and their difference.")
    r.add_argument("file", help="the .npz written by --save-counterexample")
    r.add_argument("--out", help="image file (default: FILE with .png)")
    r.add_argument("--channel", type=int, default=0, help="input channel to draw (default 0)")
    r.add_argument("--frames", type=int, nargs="+", help="frames to draw (default: all, or the changed ones)")
    r.set_defaults(func=cmd_render)
