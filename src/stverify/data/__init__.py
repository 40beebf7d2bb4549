"""MedMNIST 3D loader and deterministic synthetic datasets in the same format."""

from .medmnist import load_npz, load_sample
from .synthetic import DATASETS, ensure_dataset, moving_video, organ_volumes

__all__ = ["DATASETS", "ensure_dataset", "load_npz", "load_sample", "moving_video", "organ_volumes"]
