"""Graph imports: residual, Inception-style, global-pooling, grouped and dilated 3D CNNs, from torch
(traced by fx) and from ONNX (torch's legacy exporter at opsets 11-18, and dynamo-exported fixtures),
compute what torch and onnxruntime compute."""
import copy
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from graph_models import SHAPE, BasicBlock, models, randomized
from stverify.network.from_onnx import from_onnx
from stverify.network.from_torch import from_torch
from stverify.network.load import load_network
from stverify.network.to_torch import torch_model

MODELS = models()
FIXTURES = Path(__file__).parent / "data" / "onnx"
# node types of each model's import (BatchNorm: the batch norms and per-channel constants that no
# Conv3d / Linear can absorb because another node reads that layer's output, or none precedes them)
NODES = {
    "resnet": dict(Conv3d=7, Add=2, ReLU=6, BatchNorm=0, AvgPool3d=1),
    "preact": dict(Conv3d=3, Add=1, BatchNorm=2, AvgPool3d=1),  # block.bn1 (the skip reads its input too) and bn
    "input_skip": dict(Conv3d=1, Add=1, MaxPool3d=1, BatchNorm=0),
    "inception": dict(Conv3d=7, Concat=1, MaxPool3d=1, BatchNorm=1, AvgPool3d=1),
    "grouped_dilated": dict(Conv3d=3, BatchNorm=1),  # the input normalisation; the bias add folds into its conv
    **{name: dict(Conv3d=1, AvgPool3d=1, Flatten=1, Linear=1) for name in MODELS if name.startswith("pool_")},
}


def _types(net) -> Counter:
    return Counter(type(layer).__name__ for layer in net.layers)


def _close(actual, expected, tol: float):
    """|actual - expected| <= tol * max(1, |expected|) everywhere."""
    expected = np.asarray(expected, dtype=np.float64)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * max(1.0, float(np.abs(expected).max())))


def _input(batch: int, shape=SHAPE, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    return torch.rand((batch,) + tuple(shape), dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _assert_torch_import(model: nn.Module, shape=SHAPE):
    """The float64 forward of the import, and its float64 torch twin, equal the module's (double)."""
    model = copy.deepcopy(model).double()
    net = from_torch(model, shape)
    x = _input(3, shape)
    with torch.no_grad():
        expected = model(x).numpy()
        twin = torch_model(net, torch.float64)(x).numpy()
    _close(net.forward(x.numpy()), expected, 1e-9)
    _close(twin, expected, 1e-9)
    return net


@pytest.mark.parametrize("name", sorted(MODELS))
def test_torch_import_equals_torch(name):
    net = _assert_torch_import(MODELS[name])
    types = _types(net)
    assert {k: types[k] for k in NODES[name]} == NODES[name]
    assert net.is_chain == (name.startswith("pool_") or name == "grouped_dilated")


def test_node_names_are_module_paths():
    net = from_torch(MODELS["resnet"], SHAPE)
    for name in ("stem.0", "layer1.conv1", "layer1.relu", "layer1.relu_1", "layer2.downsample.0", "fc"):
        assert name in net.names
    add = net.tensor("add_1")  # the second block's `out += identity`
    assert isinstance(net.layers[add - 1], type(net.layers[net.tensor("add") - 1]))
    assert net.sources[add - 1] == (net.tensor("layer2.conv2"), net.tensor("layer2.downsample.0"))
    skip = from_torch(MODELS["input_skip"], SHAPE)
    assert skip.sources[skip.tensor("add") - 1] == (0, skip.tensor("conv"))  # x + conv(x) reads the input


@settings(max_examples=25, deadline=None)
@given(cin=st.integers(1, 3), cout=st.integers(1, 4), stride=st.integers(1, 2),
       kernel=st.sampled_from([1, 3, (1, 3, 3), (3, 1, 1)]), t=st.integers(1, 4), hw=st.integers(2, 6),
       seed=st.integers(0, 10_000))
def test_random_residual_blocks(cin, cout, stride, kernel, t, hw, seed):
    torch.manual_seed(seed)
    block = randomized(nn.Sequential(BasicBlock(cin, cout, stride, kernel), nn.Flatten()), seed)
    net = _assert_torch_import(block, (cin, t, hw, hw))
    types = _types(net)
    assert types["Add"] == 1 and types["BatchNorm"] == 0  # every batch norm folds into its conv
    assert types["Conv3d"] == 2 + (stride != 1 or cin != cout)


class DeadBatchNorm(nn.Module):
    """A batch norm whose result is unused reads the output layer: it must not be folded into it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(int(np.prod(SHAPE)), 3)
        self.bn = randomized(nn.BatchNorm1d(3), 1)
        self.unused = nn.Conv3d(SHAPE[0], 1, 1)

    def forward(self, x):
        y = self.fc(torch.flatten(x, 1))
        self.bn(y)
        self.unused(x)
        return y


def test_unused_nodes_are_dropped_and_fold_nothing():
    model = DeadBatchNorm().eval()
    net = _assert_torch_import(model)
    assert [type(layer).__name__ for layer in net.layers] == ["Flatten", "Linear"]
    np.testing.assert_array_equal(net.layers[1].weight, model.fc.weight.detach().double().numpy())


class Constants(nn.Module):
    """Per-channel constants on either side of + - * /, with alpha and in place: one BatchNorm node."""

    def __init__(self):
        super().__init__()
        self.register_buffer("c", torch.tensor([0.5, -2.0]).view(1, 2, 1, 1, 1))

    def forward(self, x):
        y = 1.5 - torch.sub(x, self.c, alpha=2.0)
        y = (self.c + y * self.c) / 4.0
        y = torch.add(y, self.c, alpha=-1.0)
        y *= 3.0
        return torch.flatten(y - 0.125, 1)


def test_constants_per_channel_become_one_scale_and_shift():
    net = _assert_torch_import(Constants())
    assert [type(layer).__name__ for layer in net.layers] == ["BatchNorm", "Flatten"]


# ---------------------------------------------------------------- ONNX


def _ort(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]


@pytest.mark.parametrize("opset,training", [(11, "EVAL"), (13, "PRESERVE"), (17, "EVAL"), (18, "PRESERVE")])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_legacy_onnx_export_imports(tmp_path, name, opset, training):
    """torch.onnx.export(dynamo=False): the import equals onnxruntime (float32) and has the torch
    import's nodes (PRESERVE keeps BatchNormalization nodes, which the importer folds or keeps)."""
    model, path = MODELS[name], tmp_path / f"{name}.onnx"
    x = _input(2, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["x"],
                          training=getattr(torch.onnx.TrainingMode, training), dynamic_axes={"x": {0: "batch"}})
    net = from_onnx(path)
    _close(net.forward(x.numpy()), _ort(path, x.numpy()), 1e-5)
    assert _types(net) == _types(from_torch(model, SHAPE))
    onnx_names = {n.name or n.output[0] for n in onnx.load(str(path)).graph.node}
    assert {n.removesuffix(".flatten") for n in net.names} <= onnx_names  # nodes are named as in the file


@pytest.mark.parametrize("fixture", sorted(p.stem for p in FIXTURES.glob("*.onnx")))
def test_dynamo_onnx_fixtures_import(fixture):
    """Models exported by torch's dynamo exporter (tests/data/onnx/make_fixtures.py): the import
    equals torch's float32 outputs stored beside them, and onnxruntime's."""
    path, stored = FIXTURES / f"{fixture}.onnx", np.load(FIXTURES / f"{fixture}.npz")
    net = from_onnx(path)
    _close(net.forward(stored["x"]), stored["y"], 1e-5)
    _close(net.forward(stored["x"]), _ort(path, stored["x"]), 1e-5)
    assert _types(net) == _types(from_torch(MODELS[fixture.removesuffix("_opset18")], SHAPE))


def test_new_users_residual_model_loads_from_onnx(tmp_path):
    """A PyTorch module with x + conv(x), exported to ONNX, loads with load_network as it does from torch."""
    model, path = MODELS["input_skip"], tmp_path / "skip.onnx"
    x = _input(2, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    net = load_network(path)
    _close(net.forward(x.numpy()), _ort(path, x.numpy()), 1e-5)
    _close(net.forward(x.numpy()), load_network(model, input_shape=SHAPE).forward(x.numpy()), 1e-5)


def _conv_model(**attrs) -> onnx.ModelProto:
    w = np.random.default_rng(0).normal(size=(2, 1, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", **attrs),
             helper.make_node("Flatten", ["c"], ["y"], name="flat")]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_onnx_same_padding_with_dilation(tmp_path, auto_pad):
    """auto_pad=SAME_* with dilations (onnxruntime cannot run it) equals the explicit symmetric pads."""
    same = from_onnx(_conv_model(auto_pad=auto_pad, dilations=[1, 2, 2]))
    explicit = _conv_model(pads=[1, 2, 2, 1, 2, 2], dilations=[1, 2, 2])
    onnx.save(explicit, tmp_path / "explicit.onnx")
    x = np.random.default_rng(1).random((2, 1, 4, 6, 6)).astype(np.float32)
    assert same.layers[0].padding == (1, 2, 2)
    _close(same.forward(x), _ort(tmp_path / "explicit.onnx", x), 1e-5)
