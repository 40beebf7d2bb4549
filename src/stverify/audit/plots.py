"""Figures of an audit (matplotlib, Agg): the gap of every claimed bound per layer (box plot) and
claimed against exact bounds (scatter)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

GAP_FLOOR = 1e-9  # gaps below this (tight claims) are drawn at it on the log axis


def _colors(sources):
    return dict(zip(sources, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3))


def gap_boxes(neurons: list[dict], path: Path) -> None:
    """Per model (panels) and layer (groups): the gaps of each source's bounds (both sides, exact neurons)."""
    models = list(dict.fromkeys(n["model"] for n in neurons))
    sources = list(dict.fromkeys(n["source"] for n in neurons))
    colors = _colors(sources)
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models) + 1, 4.0), squeeze=False)
    for ax, model in zip(axes[0], models):
        ns = [n for n in neurons if n["model"] == model and n["exact"]]
        layers = sorted({n["layer"] for n in ns})
        names = {n["layer"]: n["layer_name"] for n in ns}
        width = 0.8 / max(len(sources), 1)
        for k, source in enumerate(sources):
            data, pos = [], []
            for j, layer in enumerate(layers):
                g = [max(n[s], GAP_FLOOR) for n in ns if n["layer"] == layer and n["source"] == source for s in ("gap_lo", "gap_hi")]
                if g:
                    data.append(g)
                    pos.append(j + (k - (len(sources) - 1) / 2) * width)
            if data:
                bp = ax.boxplot(data, positions=pos, widths=width * 0.85, patch_artist=True, showfliers=True,
                                flierprops={"markersize": 2, "alpha": 0.4}, medianprops={"color": "black"})
                for b in bp["boxes"]:
                    b.set_facecolor(colors[source])
                    b.set_alpha(0.75)
        ax.set_xticks(range(len(layers)), [f"{i}\n{names[i]}" for i in layers], fontsize=7)
        ax.set(yscale="log", title=model, xlabel="input of layer i (the layers it lies between)", ylabel="gap to the exact bound")
        ax.grid(alpha=0.3, axis="y", which="both")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[s], alpha=0.75) for s in sources]
    fig.legend(handles, sources, loc="lower center", ncol=min(len(sources), 6), fontsize=8, frameon=False)
    fig.suptitle(f"Gap of claimed to exact bounds (tight: drawn at {GAP_FLOOR:g})", fontsize=10)
    fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def claimed_vs_exact(neurons: list[dict], path: Path) -> None:
    """Claimed lower bounds against exact minima and claimed upper bounds against exact maxima
    (sound claims lie on or below / above the diagonal); unsound claims circled in red."""
    sources = list(dict.fromkeys(n["source"] for n in neurons))
    colors = _colors(sources)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, (claimed, exact, bad, title) in zip(axes, (("lo_c", "lo", "unsound_lo", "lower bounds (sound: on or below)"),
                                                       ("hi_c", "hi", "unsound_hi", "upper bounds (sound: on or above)"))):
        vals = []
        for source in sources:
            ns = [n for n in neurons if n["source"] == source and np.isfinite(n[claimed]) and np.isfinite(n[exact])]
            x, y = np.array([n[exact] for n in ns]), np.array([n[claimed] for n in ns])
            ax.scatter(x, y, s=5, alpha=0.5, color=colors[source], label=source, rasterized=True)
            vals += [x, y]
            wrong = np.array([n[bad] for n in ns], dtype=bool)
            if wrong.any():
                ax.scatter(x[wrong], y[wrong], s=60, facecolors="none", edgecolors="red", linewidths=1.2,
                           label=f"{source}: unsound ({int(wrong.sum())})")
        if vals:
            v = np.concatenate(vals)
            lo, hi = float(v.min()), float(v.max())
            ax.plot([lo, hi], [lo, hi], color="gray", lw=1, ls=":")
        ax.set(xlabel="exact value (attained)", ylabel="claimed bound", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, markerscale=2, loc="upper left")
    fig.suptitle("Claimed vs exact neuron bounds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def write_figures(neurons: list[dict], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    if not neurons:
        return []
    made = [out / "gap_per_layer.png", out / "claimed_vs_exact.png"]
    gap_boxes(neurons, made[0])
    claimed_vs_exact(neurons, made[1])
    return made
