"""Datasets: an ``.npz`` loader for any layout (MedMNIST 3D files as published, float or uint8 clips
with any channel count, class labels or regression targets), and the generated datasets by name
(moving-blob videos, organ-like volumes, driving clips with steering targets, digit actions).

    X, y = load_npz("driving", "train")          # a name, or the path of an .npz file
    spec = dataset_spec("driving")               # spec.input_shape, spec.task, spec.n_classes, spec.classes
"""

from .action import digit_actions
from .catalog import DATASETS, DatasetSpec, data_path, dataset_spec, ensure_dataset
from .driving import driving_clips
from .layout import LAYOUTS
from .loader import SPLITS, Split, load_npz, load_sample, read_split
from .synthetic import moving_video, organ_volumes

__all__ = ["DATASETS", "LAYOUTS", "SPLITS", "DatasetSpec", "Split", "data_path", "dataset_spec", "digit_actions",
           "driving_clips", "ensure_dataset", "load_npz", "load_sample", "moving_video", "organ_volumes", "read_split"]
