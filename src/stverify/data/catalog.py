"""The datasets stverify generates, by name: what each holds, and its file, generated on first use.

A name stands for its file wherever a dataset file is taken (``data_path``): ``--data driving``,
``load_npz("action", "train")``, a bench config's ``data = "volume"``.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError
from . import archive, splits
from .action import CLASSES as ACTIONS, digit_actions
from .driving import driving_clips
from .synthetic import moving_video, organ_volumes


@dataclass(frozen=True)
class DatasetSpec:
    """A generated dataset: its generator and arguments, the shape of one input, what a label is."""

    name: str
    generator: Callable
    input_shape: tuple[int, int, int, int]  # C, T, H, W
    classes: tuple[str, ...] | None  # the class names; None: regression (float targets)
    description: str
    args: dict = field(default_factory=dict)  # of the generator, after the path

    @property
    def task(self) -> str:
        return "regression" if self.classes is None else "classification"

    @property
    def n_classes(self) -> int | None:
        return None if self.classes is None else len(self.classes)


_SIZES = {"n_train": 2000, "n_val": 300, "n_test": 300, "seed": 0}
_DIRECTIONS = ("right", "left", "down", "up")
_STEERING = "steering in [-1, 1] (negative left, positive right) for the lane curvature of the last frame"
DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("video", moving_video, (1, 4, 10, 10), _DIRECTIONS,
                "a Gaussian blob moving 1-1.5 pixels per frame; class: its direction", {**_SIZES, "frames": 4, "size": 10}),
    DatasetSpec("video8", moving_video, (1, 8, 16, 16), _DIRECTIONS,
                "as video, 8 frames of 16 x 16", {**_SIZES, "frames": 8, "size": 16}),
    DatasetSpec("volume", organ_volumes, (1, 28, 28, 28), ("left sphere", "long ellipsoid", "flat disk", "two spheres"),
                "MedMNIST-like 28^3 volumes of an organ-like blob in a faint body; class: its shape and place",
                {"n_train": 1200, "n_val": 200, "n_test": 200, "seed": 0, "size": 28}),
    DatasetSpec("driving", driving_clips, (3, 4, 16, 16), None,
                "RGB road clips in the Udacity layout (float, channel-last); target: " + _STEERING,
                {**_SIZES, "frames": 4, "size": 16, "channels": 3}),
    DatasetSpec("driving2", driving_clips, (2, 4, 10, 10), None,
                "small road clips, 2 channels (luminance, its change since the last frame); target: " + _STEERING,
                {**_SIZES, "frames": 4, "size": 10, "channels": 2}),
    DatasetSpec("action", digit_actions, (1, 8, 16, 16), ACTIONS,
                "scikit-learn's handwritten digits zoomed or moved over the frames; class: the motion",
                {**_SIZES, "frames": 8, "size": 16}),
)}


def dataset_spec(name: str) -> DatasetSpec:
    """The entry ``name`` of ``DATASETS``; InputError listing the names otherwise."""
    if not isinstance(name, str) or name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name]


def _sources(spec: DatasetSpec) -> bytes:
    modules = (sys.modules[spec.generator.__module__], splits, archive)
    return b"".join(Path(m.__file__).read_bytes() for m in modules)


def ensure_dataset(name: str, root=None) -> Path:
    """Path of the named dataset, generated into ``root`` if missing.

    ``root`` defaults to ``$STVERIFY_DATA`` or ``~/.cache/stverify/data``. The file name carries a
    hash of the arguments and of the generator's source, so a changed generator gets a fresh file.
    """
    spec = dataset_spec(name)
    root = Path(root or os.environ.get("STVERIFY_DATA") or Path.home() / ".cache" / "stverify" / "data")
    recipe = json.dumps({"generator": spec.generator.__name__, **spec.args}, sort_keys=True).encode()
    path = root / f"{name}-{hashlib.sha256(recipe + _sources(spec)).hexdigest()[:12]}.npz"
    if not path.is_file():
        spec.generator(path, **spec.args)
    return path


def data_path(data) -> Path:
    """A dataset name (its file, generated on first use) or the path of an .npz file."""
    return ensure_dataset(data) if isinstance(data, str) and data in DATASETS else Path(data)
