"""Figures of a run (matplotlib, Agg): cactus plot, MILP time with naive vs STBP big-M, certified
vs exact robust accuracy against eps per threat kind."""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import numpy as np  # noqa: E402

from ..threats import KINDS, parse_eps  # noqa: E402
from .imported import is_imported  # noqa: E402
from .methods import is_complete  # noqa: E402

DECIDED = ("verified", "falsified")


def cactus(records: list[dict], path: Path) -> None:
    """Instances decided (verified or falsified) within a time limit, per method (imported tools dotted)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    times = [r["time_s"] for r in records]
    for m in dict.fromkeys(r["method"] for r in records):
        rs = [r for r in records if r["method"] == m]
        t = np.sort([r["time_s"] for r in rs if r["status"] in DECIDED])
        ax.step(np.concatenate([[min(times)], t, [max(times)]]), np.concatenate([[0], np.arange(1, len(t) + 1), [len(t)]]),
                where="post", lw=1.8, ls="-" if is_complete(rs[0]) else ":" if is_imported(rs[0]) else "--",
                label=f"{m} ({len(t)}/{len(rs)})" + (" imported" if is_imported(rs[0]) else ""))
    imported = ", dotted: imported" if any(is_imported(r) for r in records) else ""
    ax.set(xscale="log", xlabel="time limit per instance (s)", ylabel="instances decided")
    ax.set_title(f"Instances decided within a time limit (dashed: incomplete{imported})", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def bigm_pairs(records: list[dict]) -> list[tuple[dict, dict]]:
    """(naive, stbp) results of MILP methods with the same other options on the same instance."""
    runs: dict = {}
    for r in records:
        if r["call"]["method"] == "milp":
            o = dict(r["call"]["options"])
            bounds = o.pop("bounds", "stbp")
            runs[(bounds, json.dumps(o, sort_keys=True), r["model"], r["split"], r["index"], r["threat"])] = r
    return [(r, runs[("stbp", *k[1:])]) for k, r in runs.items() if k[0] == "naive" and ("stbp", *k[1:]) in runs]


def bigm_scatter(pairs: list[tuple[dict, dict]], path: Path) -> None:
    """One point per instance: colour = threat kind, marker = outcome (both verified, both falsified, other)."""
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    kinds = [k for k in KINDS if any(a["kind"] == k for a, _ in pairs)]
    colors = dict(zip(kinds, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    markers = {"verified": "o", "falsified": "^", "other": "x"}
    outcome = lambda a, b: a["status"] if a["status"] == b["status"] and a["status"] in DECIDED else "other"  # noqa: E731
    for (a, b) in pairs:
        ax.scatter(a["time_s"], b["time_s"], s=22, marker=markers[outcome(a, b)], color=colors[a["kind"]], alpha=0.75)
    handles = [Line2D([], [], ls="", marker="o", color=colors[k], label=k) for k in kinds]
    handles += [Line2D([], [], ls="", marker=m, color="0.3", label=o if o != "other" else "timeout / undecided")
                for o, m in markers.items()]
    lo = min(min(a["time_s"], b["time_s"]) for a, b in pairs) * 0.7
    hi = max(max(a["time_s"], b["time_s"], a["call"]["timeout"]) for a, b in pairs) * 1.4
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1, ls=":")
    limit = max(a["call"]["timeout"] for a, _ in pairs)
    ax.axvline(limit, color="0.5", lw=0.8, ls="--")
    ax.axhline(limit, color="0.5", lw=0.8, ls="--")
    handles.append(Line2D([], [], color="0.5", lw=0.8, ls="--", label=f"timeout ({limit:g} s)"))
    faster = sum(b["time_s"] < a["time_s"] for a, b in pairs)
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="MILP time, naive big-M (IBP over the box) (s)",
           ylabel="MILP time, STBP big-M (s)", title=f"Big-M from STBP bounds: faster on {faster}/{len(pairs)}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def family(threat: str) -> str:
    """A threat spec with its eps left open: the x-axis of one panel."""
    return re.sub(r"eps=[^,]+", "eps=*", threat)


def accuracy_eps(records: list[dict], summary: list[dict], path: Path) -> None:
    """Per model (rows) and each of its threat families (columns, by kind: models whose input shapes
    give other default sets, e.g. another patch size, share the column of the kind; a model with fewer
    families leaves the rest blank): verified fraction of each incomplete method and the exact robust
    accuracy (grey band: lo-hi while instances are undecided) against eps."""
    models = list(dict.fromkeys(r["model"] for r in summary))
    families = {m: list(dict.fromkeys(family(r["threat"]) for r in summary if r["model"] == m)) for m in models}
    columns = max(len(f) for f in families.values())
    incomplete = list(dict.fromkeys(r["method"] for r in records if not is_complete(r)))
    colors = dict(zip(incomplete, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(len(models), columns, figsize=(3.4 * columns + 1.8, 2.9 * len(models)),
                             squeeze=False, sharey=True)
    for row, model in zip(axes, models):
        for ax in row[len(families[model]):]:
            ax.set_visible(False)
        for ax, fam in zip(row, families[model]):
            rows = sorted((r for r in summary if r["model"] == model and family(r["threat"]) == fam),
                          key=lambda r: parse_eps(r["eps"]))
            x = [parse_eps(r["eps"]) * 255 for r in rows]
            ax.fill_between(x, [r["exact_robust_lo"] for r in rows], [r["exact_robust_hi"] for r in rows], color="0.85",
                            label="exact robust, undecided band")
            ax.plot(x, [r["exact_robust_lo"] for r in rows], "k-o", ms=4, lw=2, label="exact robust acc")
            for m, marker in zip(incomplete, "s^vDPX" * len(incomplete)):
                ax.plot(x, [r.get(m, np.nan) for r in rows], "--", marker=marker, ms=4, color=colors[m], label=m)
            ax.set(ylim=(-0.03, 1.03), xlabel="eps x 255", xticks=x, xticklabels=[f"{v:g}" for v in x])
            ax.set_title(f"{model}  {fam}", fontsize=8)
            ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of instances")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 6), fontsize=8, frameon=False)
    fig.suptitle("Certified (incomplete methods) vs exact robust accuracy", fontsize=11)
    fig.tight_layout(rect=(0, 0.45 / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def write_figures(records: list[dict], summary: list[dict], out: Path) -> list[Path]:
    """The figures the records allow; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    made = [out / "cactus.png", out / "accuracy_eps.png"]
    cactus(records, made[0])
    accuracy_eps(records, summary, made[1])
    pairs = bigm_pairs(records)
    if pairs:
        made.append(out / "milp_bigm.png")
        bigm_scatter(pairs, made[-1])
    return made
