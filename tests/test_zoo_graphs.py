"""The zoo's graph models (residual, Inception, R3D-18 topology): they import into the IR with the
structure their torch code states, compute what torch computes, their STBP margins hold at sampled
points of the threat set, and interval bounds through their torch code (used by IBP training) are
sound and equal those through the imported network."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from graph_models import SHAPE as TEST_SHAPE, models as graph_test_models
from stverify import zoo
from stverify.network import Add, AvgPool3d, Concat, Conv3d, MaxPool3d
from stverify.network.from_torch import from_torch
from stverify.stbp_hybrid.certify import certify
from stverify.stbp_hybrid.intervals import interval_all
from stverify.threats import parse_threat
from stverify.zoo import train as zt

GRAPHS = ("resnet2b", "medmnist_resnet", "inception")
TRAINED = [n for n in GRAPHS if n in zoo.available()]


def _nodes(net, kind):
    return [i for i, layer in enumerate(net.layers) if isinstance(layer, kind)]


@pytest.mark.parametrize("name", GRAPHS)
def test_graph_model_imports_with_its_structure_and_computes_what_torch_computes(name):
    model = zoo.build_torch(name).eval()
    net = from_torch(model, model.input_shape, name=name)
    assert not net.is_chain and net.n_classes == zoo.ARCHITECTURES[name].n_classes
    pool = net.layers[_nodes(net, AvgPool3d)[-1]]
    assert pool.kernel == tuple(net.shapes[net.source(_nodes(net, AvgPool3d)[-1])][1:])  # global average pooling
    if name == "inception":
        (cat,) = _nodes(net, Concat)
        assert len(net.sources[cat]) == 3 and net.shapes[cat + 1][0] == 12
        (mp,) = _nodes(net, MaxPool3d)
        assert net.layers[mp].kernel == (3, 3, 3) and net.layers[mp].stride == (1, 1, 1) and net.layers[mp].padding == (1, 1, 1)
    else:
        adds = _nodes(net, Add)
        assert len(adds) == 2
        # the first block's skip is the stem's output itself; the second's a strided 1x1x1 conv (BN folded in)
        shortcut = [net.layers[t - 1] for t in net.sources[adds[1]] if isinstance(net.layers[t - 1], Conv3d)
                    and net.layers[t - 1].kernel == (1, 1, 1)]
        assert len(shortcut) == 1 and shortcut[0].stride == (2, 2, 2)
    x = torch.rand((3,) + model.input_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        ref = model.double()(x).numpy()
    np.testing.assert_allclose(net.forward(x.numpy()), ref, rtol=0, atol=1e-9)


def test_r3d18_small_has_the_r3d18_topology_and_is_deterministic():
    model = zoo.load_pretrained("r3d18_small")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    stem = convs[0]
    assert (stem.in_channels, stem.kernel_size, stem.stride, stem.padding) == (3, (3, 7, 7), (1, 2, 2), (1, 3, 3))
    blocks = list(model.blocks)
    assert len(blocks) == 8
    widths = [b.conv2.out_channels for b in blocks]
    w = stem.out_channels
    assert widths == [w, w, 2 * w, 2 * w, 4 * w, 4 * w, 8 * w, 8 * w]
    down = [b for b in blocks if not isinstance(b.shortcut, nn.Identity)]
    assert [blocks.index(b) for b in down] == [2, 4, 6]
    assert all(b.shortcut[0].kernel_size == (1, 1, 1) and b.shortcut[0].stride == (2, 2, 2) for b in down)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    assert all(float((bn.running_var - 1).abs().min()) > 0 for bn in bns)  # non-trivial statistics
    assert all(float(bn.running_mean.abs().max()) > 0 for bn in bns)
    again = zoo.load_pretrained("r3d18_small")
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    net = zoo.network("r3d18_small")
    assert net.input_shape == (3, 16, 112, 112) and len(_nodes(net, Add)) == 8


@pytest.mark.slow
def test_r3d18_small_network_computes_what_torch_computes():
    model = zoo.load_pretrained("r3d18_small").double()
    net = zoo.network("r3d18_small")
    x = np.random.default_rng(0).uniform(size=net.input_shape)
    with torch.no_grad():
        ref = model(torch.tensor(x[None]))[0].numpy()
    np.testing.assert_allclose(net.forward(x), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", TRAINED)
def test_trained_graph_models_are_accurate_and_their_stbp_margins_hold_at_sampled_points(name):
    from stverify.data import ensure_dataset, load_sample

    net = zoo.network(name)
    entry = zoo.manifest()[name]
    assert entry["clean_test_acc"] > 0.85
    x, y = load_sample(ensure_dataset(zoo.ARCHITECTURES[name].dataset), "test", 0)
    rng = np.random.default_rng(0)
    for spec in ("linf:eps=4/255", "anyframes:k=1,eps=16/255", "anypatch:eps=8/255,len=2,h=3,w=3"):
        threat = parse_threat(spec)
        cert = certify(net, x, int(y), threat, "crown")
        pts = threat.sample(x, 64, rng)
        values = net.values(pts)
        out = values[-1]
        margins = out[:, [y]] - out
        worst = np.delete(margins, y, axis=1).min(axis=0)  # per competitor, the smallest margin found
        assert np.all(np.delete(cert.margin_lb, y) <= worst + 1e-9), (spec, cert.margin_lb, worst)
        for t, (lo, hi) in enumerate(cert.bounds):  # every tensor's box holds the sampled points' values
            assert np.all(values[t] >= lo - 1e-9) and np.all(values[t] <= hi + 1e-9), (spec, t)


@pytest.mark.parametrize("name", list(graph_test_models()) + list(GRAPHS))
def test_interval_bounds_through_torch_code_are_sound_and_equal_the_imported_networks(name):
    model = (graph_test_models()[name] if name not in GRAPHS else zoo.build_torch(name).eval()).double()
    shape = getattr(model, "input_shape", TEST_SHAPE)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand((2,) + tuple(shape), generator=gen, dtype=torch.float64)
    lo, hi = x - 0.02, x + 0.02
    with torch.no_grad():
        boxes = interval_all(model, lo, hi)
        twin = from_torch(model, tuple(shape)).to_torch(torch.float64)
        tlo, thi = interval_all(twin, lo, hi)[-1]
    out_lo, out_hi = boxes[-1]
    assert torch.equal(boxes[0][0], lo) and torch.equal(boxes[0][1], hi)
    with torch.no_grad():
        for _ in range(20):
            z = model(lo + (hi - lo) * torch.rand(lo.shape, generator=gen, dtype=torch.float64))
            assert torch.all(out_lo <= z + 1e-12) and torch.all(z <= out_hi + 1e-12)
    np.testing.assert_allclose(out_lo.numpy(), tlo.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out_hi.numpy(), thi.numpy(), rtol=1e-9, atol=1e-9)


def test_interval_bounds_use_eval_mode_batch_norm_and_refuse_what_they_cannot_bound():
    model = graph_test_models()["resnet"].double().train()  # batch statistics in forward; the bounds use the running ones
    x = torch.rand((4,) + TEST_SHAPE, dtype=torch.float64)
    with torch.no_grad():
        lo, hi = interval_all(model, x, x)[-1]
        z = model.eval()(x)
    np.testing.assert_allclose(lo.numpy(), z.numpy(), atol=1e-12)
    np.testing.assert_allclose(hi.numpy(), z.numpy(), atol=1e-12)

    class Gate(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    with pytest.raises(TypeError, match="no interval rule for sigmoid"):
        interval_all(Gate(), x, x)

    class Product(nn.Module):
        def forward(self, x):
            return torch.flatten(x * x, 1)

    with pytest.raises(TypeError, match="no interval rule for mul of two tensors"):
        interval_all(Product(), x, x)


def test_interval_rules_for_constants_and_differences():
    class Arith(nn.Module):
        def forward(self, x):
            y = (x - 0.5) * -2.0 / 4.0  # a negative scale swaps the bounds
            return torch.flatten(3.0 - y + (x - torch.relu(x)), 1)

    x = torch.rand((3,) + TEST_SHAPE, dtype=torch.float64)
    lo, hi = interval_all(Arith(), x - 0.1, x + 0.1)[-1]
    with torch.no_grad():
        for _ in range(50):
            z = Arith()(x + 0.2 * (torch.rand_like(x) - 0.5))
            assert torch.all(lo <= z + 1e-12) and torch.all(z <= hi + 1e-12)
    assert torch.all(lo < hi)


def test_ibp_training_freezes_batch_norm_from_the_first_ibp_step_and_its_bounds_hold():
    eps = 8 / 255
    model, metrics = zt.train("resnet2b", method="ibp", eps=eps, epochs=2, batch_size=20, warmup=0.5, ramp=0.5,
                              n_train=40, n_test=20, threads=1)
    assert not model.training
    bn = model.stem[1]
    assert float((bn.running_var - 1).abs().max()) > 1e-3  # the warm-up trained with batch statistics
    X, y = zt.load_split("video8", "test", 20)
    lo, hi = zt.linf_box(X, eps)
    with torch.no_grad():
        lb, ub = zt.logit_bounds(model, lo, hi)
        for _ in range(5):
            z = model(lo + (hi - lo) * torch.rand_like(X))
            assert torch.all(lb <= z + 1e-5) and torch.all(z <= ub + 1e-5)
    assert metrics["ibp_certified_acc"] <= metrics["clean_test_acc"]
    # Two runs identical up to their first IBP step (8 steps, the ramp starts at step 2), then with
    # other eps / kappa schedules: their weights part, their running statistics do not (frozen).
    runs = [zt.train("resnet2b", method="ibp", eps=eps, epochs=4, batch_size=20, warmup=0.25, ramp=r, n_train=40,
                     n_test=20, threads=1)[0].state_dict() for r in (0.75, 0.25)]
    assert not torch.equal(runs[0]["fc.weight"], runs[1]["fc.weight"])
    stats = [k for k in runs[0] if "running" in k]
    assert len(stats) == 2 * 6  # six batch norms
    for k in stats:
        assert torch.equal(runs[0][k], runs[1][k]), k


def test_regression_training_reports_mae_and_sound_deviation_bounds():
    eps = 4 / 255
    model, metrics = zt.train("steering", method="ibp", eps=eps, epochs=1, batch_size=25, warmup=0.0, ramp=0.5,
                              n_train=50, n_test=30, threads=1)
    assert metrics["task"] == "regression" and "clean_test_acc" not in metrics
    X, y = zt.load_split("driving", "test", 30)
    assert y.is_floating_point()
    with torch.no_grad():
        out = model(X)[:, 0]
        assert metrics["test_mae"] == pytest.approx(float((out - y).abs().mean()), rel=1e-5)
        lb, ub = zt.logit_bounds(model, *zt.linf_box(X, eps))
        dev = torch.maximum(ub[:, 0] - out, out - lb[:, 0])
        assert metrics["ibp_deviation_median"] == pytest.approx(float(dev.median()), rel=1e-5)
        lo, hi = zt.linf_box(X, eps)
        for _ in range(5):
            z = model(lo + (hi - lo) * torch.rand_like(X))[:, 0]
            assert torch.all((z - out).abs() <= dev + 1e-5)
    assert torch.equal(zt.worst_squared_error(torch.tensor([[-1.0], [0.0]]), torch.tensor([[0.5], [2.0]]),
                                              torch.tensor([0.0, 0.5])), torch.tensor([1.0, 2.25]))


def test_untrained_model_cannot_be_trained():
    from stverify.errors import InputError

    with pytest.raises(InputError, match="r3d18_small is not trained"):
        zt.train("r3d18_small", epochs=1)


def test_cli_asks_for_data_for_the_zoo_model_without_a_dataset(capsys):
    from stverify.cli import main

    assert main(["verify", "--model", "r3d18_small", "--index", "0", "--threat", "linf:eps=1/255"]) == 2
    err = capsys.readouterr().err
    assert "'r3d18_small' has no dataset" in err and "--data" in err and "Traceback" not in err
