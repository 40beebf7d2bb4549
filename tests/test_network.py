"""The numpy reference forward of the layer IR against torch in float64."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from stverify.network import Conv3d, Flatten, Linear, Network, ReLU, fold_batchnorm, from_torch



def _randomize_bn(bn: nn.Module, gen: torch.Generator) -> nn.Module:
    """Non-trivial affine parameters and running statistics, eval mode."""
    n = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(torch.rand(n, generator=gen) * 2 - 1)
        bn.bias.copy_(torch.rand(n, generator=gen) - 0.5)
        bn.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
        bn.running_var.copy_(torch.rand(n, generator=gen) + 0.1)
    return bn


def _assert_matches(model: nn.Module, input_shape, batch: int = 3, seed: int = 0) -> Network:
    model = model.double().eval()
    net = from_torch(model, input_shape)
    x = torch.rand((batch,) + tuple(input_shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(net.forward(x.numpy()), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(net.forward(x[0].numpy()), expected[0], rtol=0, atol=1e-9)
    with torch.no_grad():
        replay = net.to_torch(torch.float64)(x).numpy()
    np.testing.assert_allclose(replay, expected, rtol=0, atol=1e-9)
    return net


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), ((1, 2, 3), (0, 1, 2)), ((2, 1, 1), 2)])
def test_conv3d(stride, padding):
    net = _assert_matches(nn.Sequential(nn.Conv3d(2, 3, (2, 3, 3), stride=stride, padding=padding), nn.Flatten()),
                          (2, 4, 7, 6))
    assert isinstance(net.layers[0], Conv3d)


def test_conv3d_without_bias():
    _assert_matches(nn.Sequential(nn.Conv3d(1, 2, 3, bias=False), nn.Flatten()), (1, 3, 5, 5))


def test_linear_and_flatten():
    net = _assert_matches(nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 4 * 4, 5)), (2, 3, 4, 4))
    assert [type(layer) for layer in net.layers] == [Flatten, Linear]
    _assert_matches(nn.Sequential(nn.Flatten()), (2, 3, 4, 4))


def test_relu():
    net = _assert_matches(nn.Sequential(nn.Flatten(), nn.ReLU()), (1, 2, 3, 3))
    assert isinstance(net.layers[1], ReLU)


@pytest.mark.parametrize("pool", [nn.AvgPool3d, nn.MaxPool3d])
@pytest.mark.parametrize("kernel,stride", [(2, None), ((1, 2, 2), None), (3, 1), ((2, 3, 1), (1, 2, 1))])
def test_pools(pool, kernel, stride):
    _assert_matches(nn.Sequential(pool(kernel, stride), nn.Flatten()), (2, 4, 7, 6))


def test_batchnorm_folding():
    gen = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Conv3d(1, 3, 2), _randomize_bn(nn.BatchNorm3d(3), gen), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 2 * 3 * 3, 4), _randomize_bn(nn.BatchNorm1d(4), gen))
    net = _assert_matches(model, (1, 3, 4, 4))
    assert [type(layer) for layer in net.layers] == [Conv3d, ReLU, Flatten, Linear]


def test_fold_batchnorm_formula():
    rng = np.random.default_rng(0)
    w, b, x = rng.normal(size=(3, 4)), rng.normal(size=3), rng.normal(size=4)
    gamma, beta, mean, var = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3), rng.random(3) + 0.1
    wf, bf = fold_batchnorm(w, b, gamma, beta, mean, var, 1e-3)
    np.testing.assert_allclose(wf @ x + bf, gamma * (w @ x + b - mean) / np.sqrt(var + 1e-3) + beta, atol=1e-12)


def test_summary_mentions_layers_shapes_and_counts():
    model = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool3d((1, 2, 2)), nn.Flatten(),
                          nn.Linear(2 * 2 * 2 * 2, 3))
    net = from_torch(model, (1, 2, 4, 4), name="demo")
    text = net.summary()
    for word in ("demo", "Conv3d(1->2", "ReLU", "MaxPool3d", "Flatten", "Linear(16->3)", "2x2x4x4", "2x2x2x2"):
        assert word in text
    assert f"{net.n_params} parameters" in text and net.n_params == 2 * 27 + 2 + 16 * 3 + 3
    assert f"{net.n_relus} ReLUs" in text and net.n_relus == 64
    assert "64" in text.splitlines()[4]  # neurons of the ReLU row


@st.composite
def stacks(draw):
    """A random small conv/pool/ReLU/BN stack ending in Flatten, Linear (and maybe ReLU, Linear)."""
    input_shape = (draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    shape = list(input_shape)
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    mods: list[nn.Module] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["conv", "relu", "avg", "max"]))
        if kind == "relu":
            mods.append(nn.ReLU())
            continue
        pad = [draw(st.integers(0, 1)) if kind == "conv" else 0 for _ in range(3)]
        kernel = [draw(st.integers(1, min(3, n + 2 * p))) for n, p in zip(shape[1:], pad)]
        stride = [draw(st.integers(1, 2)) for _ in range(3)]
        pad = [min(p, k // 2) for p, k in zip(pad, kernel)]  # torch requires padding <= kernel / 2
        if any(k > n + 2 * p for n, k, p in zip(shape[1:], kernel, pad)):
            continue
        if kind == "conv":
            out = draw(st.integers(1, 3))
            mods.append(nn.Conv3d(shape[0], out, kernel, stride, pad))
            if draw(st.booleans()):
                mods.append(_randomize_bn(nn.BatchNorm3d(out), gen))
            shape[0] = out
        else:
            mods.append((nn.AvgPool3d if kind == "avg" else nn.MaxPool3d)(kernel, stride))
        shape[1:] = [(n + 2 * p - k) // s + 1 for n, k, s, p in zip(shape[1:], kernel, stride, pad)]
    n = int(np.prod(shape))
    hidden = draw(st.integers(2, 5))
    mods += [nn.Flatten(), nn.Linear(n, hidden)]
    if draw(st.booleans()):
        mods += [nn.ReLU(), nn.Linear(hidden, 3)]
    with torch.no_grad():
        for m in mods:
            if isinstance(m, (nn.Conv3d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
    return nn.Sequential(*mods), input_shape


@settings(max_examples=30, deadline=None)
@given(stacks())
def test_random_stacks_match_torch(case):
    model, input_shape = case
    _assert_matches(model, input_shape)
