"""Regenerate the ONNX fixtures of tests/test_graph_import.py: the models of tests/graph_models.py
exported by torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``), each beside an .npz
holding a float32 input batch ``x`` and torch's float32 outputs ``y`` on it.

The dynamo exporter needs ``onnxscript``, which the project does not depend on; run this in a
scratch environment that has it, e.g.

    python -m venv /tmp/venv_onnx
    /tmp/venv_onnx/bin/pip install torch==2.13.0 onnx onnxruntime onnxscript numpy
    /tmp/venv_onnx/bin/python tests/data/onnx/make_fixtures.py
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/, for graph_models
from graph_models import SHAPE, models  # noqa: E402

# fixture name -> (model name, opset: None for the exporter's default)
EXPORTED = {"resnet": ("resnet", None), "resnet_opset18": ("resnet", 18), "preact": ("preact", None),
            "input_skip": ("input_skip", None), "inception": ("inception", None),
            "grouped_dilated": ("grouped_dilated", None), "pool_mean": ("pool_mean", None)}


def main() -> None:
    x = torch.rand((2,) + SHAPE, generator=torch.Generator().manual_seed(0))
    zoo = models()
    for fixture, (name, opset) in EXPORTED.items():
        model = zoo[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (x,), dynamo=True, input_names=["x"], opset_version=opset,
                                        verbose=False)
        program.save(str(HERE / f"{fixture}.onnx"))
        with torch.no_grad():
            np.savez(HERE / f"{fixture}.npz", x=x.numpy(), y=model(x).numpy())
        print(fixture, (HERE / f"{fixture}.onnx").stat().st_size, "bytes")


if __name__ == "__main__":
    main()
