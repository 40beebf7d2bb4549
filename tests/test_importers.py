"""Importers: torch modules, ONNX files (checked against onnxruntime), load_network, clear errors."""
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from stverify.errors import InputError
from stverify.network import (Conv3d, Flatten, Linear, MaxPool3d, Network, ReLU, UnsupportedLayerError,
                              UnsupportedOperatorError, from_onnx, from_torch, load_network)


def _bn(n: int, seed: int) -> nn.BatchNorm3d:
    """A batch norm with non-trivial parameters and running statistics."""
    gen = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm3d(n)
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.copy_(torch.rand(n, generator=gen) - 0.5)
        bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return bn


class Traced(nn.Module):
    """A plain forward written with functional calls, traced by torch.fx."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv3d(1, 3, 3, padding=1)
        self.bn = _bn(3, 1)
        self.pool = nn.MaxPool3d((1, 2, 2))
        self.drop = nn.Dropout(0.3)
        self.head = nn.Sequential(nn.Linear(3 * 2 * 2 * 2, 5), nn.Sequential(nn.ReLU(), nn.Identity()))
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.conv1(x))))
        x = torch.relu(self.drop(x))
        x = x.view(x.size(0), -1).reshape(x.shape[0], -1)
        return self.fc(self.head(torch.flatten(x, 1)))


class ViewNet(nn.Module):
    """BatchNorm3d, Dropout, MaxPool3d and a view(-1, n) reshape."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 4, (2, 3, 3), stride=(1, 2, 2))
        self.bn = _bn(4, 3)
        self.drop = nn.Dropout(0.5)
        self.pool = nn.MaxPool3d(2)
        self.fc = nn.Linear(4 * 1 * 2 * 2, 3)

    def forward(self, x):
        x = self.pool(self.drop(torch.relu(self.bn(self.conv(x)))))
        return self.fc(x.view(-1, 16))


def test_traced_modules_match_torch():
    model = Traced().double().eval()
    net = from_torch(model, (1, 2, 4, 4))
    assert [type(layer) for layer in net.layers] == [Conv3d, ReLU, MaxPool3d, ReLU, Flatten, Linear, ReLU, Linear]
    assert net.name == "Traced" and net.is_chain
    x = torch.rand(2, 1, 2, 4, 4, dtype=torch.float64)
    np.testing.assert_allclose(net.forward(x.numpy()), model(x).detach().numpy(), atol=1e-9, rtol=0)
    model = ViewNet().double().eval()
    net = from_torch(model, (1, 3, 9, 9), name="view")
    assert [type(layer) for layer in net.layers] == [Conv3d, ReLU, MaxPool3d, Flatten, Linear]
    x = torch.rand(1, 1, 3, 9, 9, dtype=torch.float64)
    np.testing.assert_allclose(net.forward(x.numpy()), model(x).detach().numpy(), atol=1e-9, rtol=0)


def test_weights_are_float64_and_read_only():
    net = from_torch(nn.Sequential(nn.Flatten(), nn.Linear(8, 2)), (1, 2, 2, 2))
    w = net.layers[1].weight
    assert w.dtype == np.float64 and not w.flags.writeable


class Sigmoidal(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(torch.sigmoid(x).flatten(1))


class Product(nn.Module):
    """A Mul of two computed tensors (squeeze-and-excitation style gating)."""

    def forward(self, x):
        return torch.flatten(x * F.relu(x), 1)


class BroadcastAdd(nn.Module):
    """Adds a computed C x 1 x 1 x 1 tensor to a C x T x H x W one."""

    def forward(self, x):
        return torch.flatten(x + F.adaptive_avg_pool3d(x, 1), 1)


class ReadAfterInPlace(nn.Module):
    """relu_ overwrites y, which the sum then reads: torch computes relu(y) + relu(y), not relu(y) + y."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 1)

    def forward(self, x):
        y = self.conv(x)
        z = torch.relu_(y)
        return torch.flatten(z + y, 1)


class ViewReadAfterInPlace(nn.Module):
    """The in-place relu writes through a view (flatten) into the tensor the sum reads."""

    def forward(self, x):
        y = x * 2.0
        f = torch.flatten(y, 1)
        f.relu_()
        return f + torch.flatten(y, 1)


class Reciprocal(nn.Module):
    def forward(self, x):
        return torch.flatten(2.0 / x, 1)


class ValueBranch(nn.Module):
    """Control flow on tensor values: fx cannot trace it."""

    def forward(self, x):
        return torch.flatten(x if x.sum() > 0 else -x, 1)


class AliasedInPlaceAdd(nn.Module):
    """fx records `y += x` as `y + x`, so z (an alias of y) keeps y's old value in the traced graph."""

    def forward(self, x):
        y = x * 2.0
        z = y
        y += x
        return torch.flatten(z + y, 1)


class Noisy(nn.Module):
    """A random tensor drawn in forward becomes a constant in the traced graph."""

    def forward(self, x):
        return torch.flatten(x + torch.rand(1), 1)


class TwoInputs(nn.Module):
    def forward(self, x, y):
        return torch.flatten(x + y, 1)


@pytest.mark.parametrize("model,words", [
    (nn.Sequential(nn.Sequential(nn.Conv3d(1, 2, 1), nn.ReLU()), nn.Sequential(nn.Flatten(), nn.Sigmoid())),
     ["Sigmoid", "'1.1'"]),
    (nn.Sequential(nn.Conv3d(1, 1, 1, padding=1, padding_mode="reflect"), nn.Flatten()), ["Conv3d", "padding_mode"]),
    (nn.Sequential(nn.Conv3d(1, 1, 2, padding="same"), nn.Flatten()), ["Conv3d", "'0'", "same", "symmetric"]),
    (nn.Sequential(nn.Flatten(), nn.LSTM(8, 2)), ["LSTM", "'1'"]),
    (nn.Sequential(nn.AvgPool3d(2, padding=1), nn.Flatten()), ["AvgPool3d", "'0'", "padding"]),
    (nn.Sequential(nn.AvgPool3d(2, ceil_mode=True), nn.Flatten()), ["AvgPool3d", "'0'", "ceil_mode"]),
    (nn.Sequential(nn.MaxPool3d(2, dilation=2), nn.Flatten()), ["MaxPool3d", "'0'", "dilation"]),
    (nn.Sequential(nn.BatchNorm3d(1, track_running_stats=False), nn.Flatten()).eval(),
     ["BatchNorm3d", "'0'", "running statistics"]),
    (nn.Sequential(nn.Flatten(start_dim=2), nn.Linear(8, 2)), ["'0'", "flattening"]),
    (nn.Sequential(nn.AdaptiveAvgPool3d(3), nn.Flatten()), ["AdaptiveAvgPool3d", "'0'", "divide"]),
    (Sigmoidal(), ["sigmoid", "'sigmoid'"]),
    (Product(), ["mul", "'mul'", "two computed tensors"]),
    (BroadcastAdd(), ["add", "'add'", "(1, 2, 2, 2) and (1, 1, 1, 1)", "one shape"]),
    (ReadAfterInPlace(), ["'add'", "'relu_'", "in-place"]),
    (ViewReadAfterInPlace(), ["'flatten_1'", "'relu_'", "in-place"]),
    (Reciprocal(), ["truediv", "'truediv'", "not affine"]),
    (TwoInputs(), ["more than one input", "'y'"]),
    (AliasedInPlaceAdd(), ["traced graph of AliasedInPlaceAdd computes something else", "in-place"]),
    (Noisy(), ["traced graph of Noisy computes something else", "randomness"]),
    (ValueBranch(), ["torch.fx cannot trace ValueBranch", "control flow"]),
])
def test_torch_unsupported(model, words):
    with pytest.raises(UnsupportedLayerError) as err:
        from_torch(model, (1, 2, 2, 2))
    message = str(err.value)
    for w in words:
        assert w in message
    assert "\n" not in message and isinstance(err.value, ValueError)


def test_linear_on_unflattened_input():
    with pytest.raises(ValueError, match=r"Linear at '0'.*flat"):
        from_torch(nn.Sequential(nn.Linear(2, 3), nn.Flatten()), (1, 2, 2, 2))


# ---------------------------------------------------------------- ONNX


def _export(model: nn.Module, input_shape, path, opset: int, **kw) -> np.ndarray:
    """Export ``model`` (float32, eval) to ``path``; return a float32 test input."""
    model = model.float().eval()
    x = torch.rand((1,) + tuple(input_shape), generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["x"], **kw)
    return x.numpy()


def _assert_matches_ort(path_or_model, x: np.ndarray) -> Network:
    net = from_onnx(path_or_model)
    source = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
    sess = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    expected = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    np.testing.assert_allclose(net.forward(x), expected, atol=1e-5, rtol=1e-5)
    return net


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("opset", [11, 17, 18])
def test_onnx_conv_relu_avgpool_flatten_gemm(tmp_path, opset):
    model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool3d((1, 2, 2)), nn.Flatten(),
                          nn.Linear(4 * 4 * 16 * 16, 10))
    path = tmp_path / "m.onnx"
    x = _export(model, (1, 4, 32, 32), path, opset)
    assert _ops(path) == ["Conv", "Relu", "AveragePool", "Flatten", "Gemm"]
    net = _assert_matches_ort(str(path), x)
    assert net.input_shape == (1, 4, 32, 32) and net.name == "m"
    assert [type(layer).__name__ for layer in net.layers] == ["Conv3d", "ReLU", "AvgPool3d", "Flatten", "Linear"]
    np.testing.assert_allclose(net.forward(x), from_torch(model, (1, 4, 32, 32)).forward(x), atol=1e-6)


@pytest.mark.parametrize("opset,kw", [
    (11, dict(training=torch.onnx.TrainingMode.PRESERVE)),  # keeps BatchNormalization nodes
    (11, dict(keep_initializers_as_inputs=True)),
    (17, dict(dynamic_axes={"x": {0: "batch"}})),  # x.size(0) becomes Shape -> Gather -> ... -> Reshape
    (18, dict(training=torch.onnx.TrainingMode.PRESERVE, dynamic_axes={"x": {0: "batch"}})),
])
@pytest.mark.parametrize("model", [Traced, ViewNet])
def test_onnx_exports_with_batchnorm_dropout_maxpool_reshape(tmp_path, opset, kw, model):
    path = tmp_path / "m.onnx"
    x = _export(model(), (1, 2, 4, 4) if model is Traced else (1, 3, 9, 9), path, opset, **kw)
    if kw.get("training"):
        assert "BatchNormalization" in _ops(path)
    _assert_matches_ort(str(path), x)


def _value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32 if np.asarray(array).dtype.kind == "f"
                                              else np.int64), name)


def _model(nodes, inits, shape=("N", 1, 2, 3, 3), out=None, opset=13):
    graph = helper.make_graph(nodes, "hand", [_value("x", list(shape))], [_value(out or nodes[-1].output[0], None)],
                              inits)
    # IR version 8: readable by older onnxruntime releases
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_onnx_matmul_add_by_hand():
    rng = np.random.default_rng(0)
    w1, b1, w2 = rng.normal(size=(18, 5)), rng.normal(size=5), rng.normal(size=(5, 3))
    nodes = [
        helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([0, -1]), "s")),
        helper.make_node("Identity", ["x"], ["xi"]),
        helper.make_node("Reshape", ["xi", "shape"], ["flat"], name="reshape"),
        helper.make_node("MatMul", ["flat", "w1"], ["h"], name="mm1"),
        helper.make_node("Add", ["b1", "h"], ["hb"], name="add1"),
        helper.make_node("Dropout", ["hb"], ["hd"]),
        helper.make_node("Relu", ["hd"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2"),
    ]
    model = _model(nodes, [_init("w1", w1), _init("b1", b1), _init("w2", w2)])
    net = _assert_matches_ort(model, rng.random((4, 1, 2, 3, 3)).astype(np.float32))
    assert [type(layer) for layer in net.layers] == [Flatten, Linear, ReLU, Linear]
    np.testing.assert_array_equal(net.layers[1].bias, b1.astype(np.float32))
    np.testing.assert_array_equal(net.layers[3].bias, 0)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_onnx_gemm_alpha_beta_transb(trans_b):
    rng = np.random.default_rng(1)
    w, c = rng.normal(size=(4, 18) if trans_b else (18, 4)), rng.normal(size=(1, 4))
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "c"], ["y"], alpha=0.5, beta=2.0, transB=trans_b)]
    _assert_matches_ort(_model(nodes, [_init("w", w), _init("c", c)], opset=11),
                        rng.random((2, 1, 2, 3, 3)).astype(np.float32))


_W = np.ones((2, 1, 1, 1, 1))


def _node(op, inputs, outputs, name=None, **attrs):
    return helper.make_node(op, inputs, outputs, name=name, **attrs)


@pytest.mark.parametrize("nodes,inits,words", [
    ([_node("Sigmoid", ["x"], ["s"], "Sigmoid_3"), _node("Flatten", ["s"], ["y"])],
     [], ["'Sigmoid'", "'Sigmoid_3'", "supported: Conv"]),
    ([_node("MaxPool", ["x"], ["a"], "mp", kernel_shape=[1, 2, 2], pads=[0, 1, 1, 0, 0, 0]),
      _node("Flatten", ["a"], ["y"])], [], ["'MaxPool'", "'mp'", "pads", "symmetric"]),
    ([_node("Conv", ["x", "w"], ["a"], "same", kernel_shape=[1, 2, 2], auto_pad="SAME_UPPER"),
      _node("Flatten", ["a"], ["y"])], [_init("w", np.ones((1, 1, 1, 2, 2)))], ["'Conv'", "'same'", "symmetric"]),
    ([_node("AveragePool", ["x"], ["a"], "ap", kernel_shape=[1, 2, 2], ceil_mode=1), _node("Flatten", ["a"], ["y"])],
     [], ["'AveragePool'", "'ap'", "ceil_mode"]),
    ([_node("AveragePool", ["x"], ["a"], "ap", kernel_shape=[1, 3, 3], pads=[0, 1, 1, 0, 1, 1]),
      _node("Flatten", ["a"], ["y"])], [], ["'AveragePool'", "'ap'", "pads", "only 0"]),
    ([_node("Relu", ["x"], ["a"]), _node("Mul", ["a", "x"], ["m"], "gate"), _node("Flatten", ["m"], ["y"])],
     [], ["'Mul'", "'gate'", "two computed tensors"]),
    ([_node("GlobalAveragePool", ["x"], ["g"]), _node("Add", ["x", "g"], ["s"], "bcast"),
      _node("Flatten", ["s"], ["y"])], [], ["'Add'", "'bcast'", "(1, 1, 2, 4, 4) and (1, 1, 1, 1, 1)", "one shape"]),
    ([_node("Add", ["x", "c"], ["s"], "ramp"), _node("Flatten", ["s"], ["y"])],
     [_init("c", np.arange(4.0))], ["'Add'", "'ramp'", "within a channel"]),
    ([_node("Div", ["c", "x"], ["s"], "inv"), _node("Flatten", ["s"], ["y"])],
     [_init("c", np.ones(1))], ["'Div'", "'inv'", "not affine"]),
    ([_node("Relu", ["x"], ["a"]), _node("Concat", ["a", "x"], ["c"], "cat", axis=2), _node("Flatten", ["c"], ["y"])],
     [], ["'Concat'", "'cat'", "axis=2"]),
    ([_node("Concat", ["x", "k"], ["c"], "catk", axis=1), _node("Flatten", ["c"], ["y"])],
     [_init("k", np.ones((1, 1, 2, 4, 4)))], ["'Concat'", "'catk'", "constants"]),
    ([_node("ReduceMean", ["x"], ["m"], "rm", axes=[3, 4], keepdims=0), _node("Flatten", ["m"], ["y"])],
     [], ["'ReduceMean'", "'rm'", "axes", "(2, 3, 4)"]),
    ([_node("Flatten", ["x"], ["f"]), _node("MatMul", ["f", "f"], ["y"], "mm")], [], ["'MatMul'", "'mm'"]),
    ([_node("Relu", ["x"], ["w"]), _node("Conv", ["x", "w"], ["a"], "wconv"), _node("Flatten", ["a"], ["y"])],
     [], ["'Conv'", "'wconv'", "computed tensor"]),
    ([_node("Flatten", ["x"], ["f"]), _node("Softmax", ["f"], ["y"], "sm")], [], ["'Softmax'", "'sm'"]),
    ([_node("Reshape", ["x", "s"], ["y"], "rs")], [_init("s", np.array([-1]))], ["'Reshape'", "'rs'", "flattening"]),
])
def test_onnx_unsupported(nodes, inits, words):
    model = _model(nodes, inits, shape=(1, 1, 2, 4, 4))
    with pytest.raises(UnsupportedOperatorError) as err:
        from_onnx(model)
    message = str(err.value)
    for w in words:
        assert w in message
    assert "\n" not in message


def test_onnx_old_opset_and_bad_input():
    nodes = [helper.make_node("Flatten", ["x"], ["y"])]
    with pytest.raises(ValueError, match="opset 10"):
        from_onnx(_model(nodes, [], opset=10))
    with pytest.raises(ValueError, match="N x C x T x H x W"):
        from_onnx(_model(nodes, [], shape=(1, 3, 8, 8)))


# ---------------------------------------------------------------- load_network


def _tiny() -> nn.Sequential:
    model = nn.Sequential(nn.Conv3d(1, 2, 2), _bn(2, 5), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 1 * 2 * 2, 3))
    model.input_shape = (1, 2, 3, 3)
    return model


def test_load_network_sources(tmp_path):
    model = _tiny().eval()
    net = load_network(model)
    assert load_network(net) is net
    assert load_network(nn.Sequential(nn.Flatten()), input_shape=(1, 2, 2, 2)).n_classes == 8
    path = tmp_path / "tiny.onnx"
    x = _export(model, model.input_shape, path, 17)
    np.testing.assert_allclose(load_network(path).forward(x), net.forward(x), atol=1e-5)
    np.testing.assert_allclose(load_network(str(path)).forward(x), net.forward(x), atol=1e-5)
    with pytest.raises(ValueError, match="input_shape"):
        load_network(nn.Sequential(nn.Flatten()))


def test_load_network_state_file(tmp_path, monkeypatch):
    from stverify import zoo

    monkeypatch.setattr(zoo, "build_torch", lambda name: _tiny() if name == "tiny_test" else None)
    trained = _tiny().eval()
    path = tmp_path / "w.pt"
    torch.save(trained.state_dict(), path)
    net = load_network(path, arch="tiny_test")
    x = np.random.default_rng(0).random((2, 1, 2, 3, 3))
    np.testing.assert_allclose(net.forward(x), trained.double()(torch.tensor(x)).detach().numpy(), atol=1e-6)
    assert net.name == "tiny_test"
    torch.save({"state_dict": trained.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pth")
    np.testing.assert_allclose(load_network(tmp_path / "checkpoint.pth", arch="tiny_test").forward(x), net.forward(x))
    with pytest.raises(ValueError, match="arch"):
        load_network(path)
    torch.save({"other": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="bad.pth: does not fit architecture 'tiny_test': missing 0.bias"):
        load_network(tmp_path / "bad.pth", arch="tiny_test")


def test_load_network_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=r"unknown extension '\.h5'.*\.onnx.*\.pt"):
        load_network(tmp_path / "model.h5")


def test_the_readme_says_what_torch_onnx_export_needs(tmp_path):
    """The README's advice holds here: without onnxscript the default exporter fails, dynamo=False works."""
    import importlib.util
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = re.search(r"## Supported networks\n(.*?)\n## ", readme, re.S).group(1)
    assert "dynamo=False" in section and "pip install onnxscript" in section
    model = nn.Sequential(nn.Conv3d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 2 * 8 * 8, 3)).eval()
    x = torch.zeros(1, 1, 4, 10, 10)
    if importlib.util.find_spec("onnxscript") is None:
        with pytest.raises(ModuleNotFoundError, match="onnxscript"):
            torch.onnx.export(model, (x,), str(tmp_path / "default.onnx"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (x,), str(tmp_path / "legacy.onnx"), dynamo=False)
    from stverify.network import load_network

    xs = np.random.default_rng(0).uniform(0, 1, (2, 1, 4, 10, 10))
    with torch.no_grad():
        np.testing.assert_allclose(load_network(tmp_path / "legacy.onnx").forward(xs),
                                   model(torch.tensor(xs, dtype=torch.float32)).numpy(), atol=1e-5)
