"""One picture per generated dataset: a few test inputs, frame by frame (the README's data section).

    python experiments/data_pictures.py [NAME ...]     # default: every dataset

writes experiments/results/data_<name>.png: one row per input (classification: one per class;
regression: targets from most negative to most positive), one column per frame (a volume: eight
depth slices); RGB shown as colour, one channel as grey, two channels as two rows (luminance, change).
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stverify.data import DATASETS, dataset_spec, read_split  # noqa: E402

OUT = Path(__file__).parent / "results"
ROWS, MAX_COLS = 4, 8


def picks(split, spec) -> list[tuple[int, str]]:
    """(index, caption) of the inputs shown."""
    if spec.task == "classification":
        return [(int(np.flatnonzero(split.labels == k)[0]), spec.classes[k]) for k in range(min(ROWS, spec.n_classes))]
    order = np.argsort(split.labels)
    return [(int(i), f"steer {split.labels[i]:+.2f}") for i in order[np.linspace(0, len(order) - 1, ROWS).astype(int)]]


def draw(name: str) -> Path:
    spec = dataset_spec(name)
    split = read_split(name, "test")
    c, t = spec.input_shape[:2]
    frames = np.linspace(0, t - 1, min(t, MAX_COLS)).astype(int)
    rows = [(i, caption, ch) for i, caption in picks(split, spec) for ch in ([None] if c != 2 else [0, 1])]
    fig, axes = plt.subplots(len(rows), len(frames), figsize=(1.1 * len(frames), 1.15 * len(rows)), squeeze=False)
    for r, (i, caption, ch) in enumerate(rows):
        x = split.sample(i)[0]
        for k, f in enumerate(frames):
            ax = axes[r, k]
            ax.imshow(x[:, f].transpose(1, 2, 0) if c == 3 else x[0 if ch is None else ch, f], cmap="gray", vmin=0,
                      vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{'slice' if name == 'volume' else 'frame'} {f}", fontsize=7)
        label = caption if ch is None else f"{caption}\n{('luminance', 'change')[ch]}"
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.suptitle(f"{name}: {' x '.join(map(str, spec.input_shape))} (C x T x H x W)", fontsize=8)
    fig.tight_layout()
    OUT.mkdir(exist_ok=True)
    path = OUT / f"data_{name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


if __name__ == "__main__":
    for name in sys.argv[1:] or DATASETS:
        print(draw(name))
