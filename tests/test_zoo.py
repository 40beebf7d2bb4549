"""The model zoo: registry, shipped weights and manifest, and (quick) IBP training."""
from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from stverify import zoo
from stverify.errors import InputError
from stverify.zoo import train as zt

ALLOWED = (nn.Conv3d, nn.ReLU, nn.AvgPool3d, nn.MaxPool3d, nn.Flatten, nn.Linear)
GRAPHS = ("resnet2b", "medmnist_resnet", "inception", "r3d18_small")  # torch modules with residual / Inception blocks
SHIPPED = [n for n in zoo.available() if zoo.ARCHITECTURES[n].trained]


@pytest.mark.parametrize("name", list(zoo.ARCHITECTURES))
def test_registry_model_builds(name):
    spec = zoo.ARCHITECTURES[name]
    model = zoo.build_torch(name)
    assert isinstance(model, nn.Sequential) == (name not in GRAPHS)
    if name not in GRAPHS:
        assert all(isinstance(m, ALLOWED) for m in model)
    assert model.input_shape == spec.input_shape and model.dataset == spec.dataset
    assert model.n_classes == spec.n_classes
    assert all(p.dtype == torch.float32 for p in model.parameters())
    out = model(torch.rand(3, *spec.input_shape))
    assert out.shape == (3, spec.n_classes)


def test_unknown_name_lists_models():
    for f in (zoo.build_torch, zoo.load_pretrained):
        with pytest.raises(ValueError, match="tiny"):
            f("no-such-model")


def test_missing_weights_error(monkeypatch, tmp_path):
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ValueError, match="no shipped weights"):
        zoo.load_pretrained("tiny")


def test_expected_models_are_shipped():
    assert {"tiny", "small", "medmnist", "resnet2b", "medmnist_resnet", "inception", "steering", "action"} <= set(SHIPPED)
    assert "r3d18_small" in zoo.available() and not zoo.ARCHITECTURES["r3d18_small"].trained
    size = sum(p.stat().st_size for p in zoo.WEIGHTS_DIR.iterdir())
    assert size < 2 * 1024 * 1024


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_load_and_match_manifest(name):
    path = zoo.weights_path(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    zoo.build_torch(name).load_state_dict(state, strict=True)
    entry = zoo.manifest()[name]
    spec = zoo.ARCHITECTURES[name]
    assert entry["architecture"] == spec.arch and entry["dataset"] == spec.dataset
    assert tuple(entry["input_shape"]) == spec.input_shape
    assert entry["weights_file"] == path.name
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    model = zoo.load_pretrained(name)
    assert not model.training
    check = entry["check_first_n"]
    X, y = zt.load_split(spec.dataset, "test", check["n"])
    got = zt.evaluate(model, X, y, entry["eps"])
    if entry.get("task") == "regression":  # the steering angle in [-1, 1]
        assert entry["test_mae"] < 0.15 and entry["ibp_deviation_median"] > 0
        assert got["mae"] == pytest.approx(check["mae"], rel=1e-4)
        assert got["ibp_deviation_median"] == pytest.approx(check["ibp_deviation_median"], rel=1e-4)
        return
    assert 0.0 <= entry["ibp_certified_acc"] <= entry["clean_test_acc"] <= 1.0
    assert entry["clean_test_acc"] > 0.85
    # same data and weights: the accuracies on the first samples are reproduced
    assert got["clean_acc"] == pytest.approx(check["clean_acc"], abs=0.02)
    assert got["ibp_certified_acc"] == pytest.approx(check["ibp_certified_acc"], abs=0.02)
    assert got["clean_acc"] == pytest.approx(entry["clean_test_acc"], abs=0.1)


def test_manifest_is_json_with_every_shipped_model():
    data = json.loads((zoo.WEIGHTS_DIR / "manifest.json").read_text())
    assert set(SHIPPED) <= set(data)


@pytest.mark.parametrize("name", [n for n in ("tiny", "tiny_maxpool") if n in SHIPPED])
def test_pretrained_network_matches_torch(name):
    pytest.importorskip("stverify.network.from_torch")
    model = zoo.load_pretrained(name)
    net = zoo.pretrained_network(name)
    X, _ = zt.load_split(model.dataset, "test", 5)
    with torch.no_grad():
        ref = model(X).double().numpy()
    np.testing.assert_allclose(net.forward(X.double().numpy()), ref, atol=1e-4)


def test_worst_case_logits_and_certified():
    lb = torch.tensor([[0.0, 1.0, -1.0], [2.0, 0.5, 0.0]])
    ub = torch.tensor([[0.5, 3.0, 0.0], [3.0, 1.5, 1.9]])
    y = torch.tensor([1, 0])
    assert torch.equal(zt.worst_case_logits(lb, ub, y), torch.tensor([[0.5, 1.0, 0.0], [2.0, 1.5, 1.9]]))
    assert zt.certified(lb, ub, y).tolist() == [True, True]
    assert zt.certified(lb, ub, torch.tensor([0, 1])).tolist() == [False, False]


def test_one_epoch_ibp_training_runs_and_bounds_are_sound():
    eps = 8 / 255
    model, metrics = zt.train("tiny", method="ibp", eps=eps, epochs=1, batch_size=16, warmup=0.0, ramp=0.5,
                              n_train=64, n_test=32, threads=1)
    assert metrics["n_train"] == 64 and metrics["n_test"] == 32
    assert 0.0 <= metrics["ibp_certified_acc"] <= metrics["clean_test_acc"] <= 1.0
    X, y = zt.load_split("video", "test", 32)
    lo, hi = zt.linf_box(X, eps)
    with torch.no_grad():
        lb, ub = zt.logit_bounds(model, lo, hi)
        z = model(X)
        assert torch.all(lb <= z + 1e-5) and torch.all(z <= ub + 1e-5)
        for _ in range(3):  # random points of the box stay inside the bounds too
            zr = model(lo + (hi - lo) * torch.rand_like(X))
            assert torch.all(lb <= zr + 1e-5) and torch.all(zr <= ub + 1e-5)


def test_training_is_deterministic():
    kw = dict(method="ibp", eps=4 / 255, epochs=1, batch_size=16, n_train=48, n_test=16, threads=1)
    m1, _ = zt.train("tiny", **kw)
    m2, _ = zt.train("tiny", **kw)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


def test_cli_writes_weights_and_manifest(tmp_path, monkeypatch, capsys):
    real = zt.train

    def quick(name, **kw):
        return real(name, **{**kw, "epochs": 1, "n_train": 32, "n_test": 16})

    monkeypatch.setattr(zt, "train", quick)
    assert zt.main(["tiny", "--method", "ibp", "--eps", "2/255", "--out", str(tmp_path), "--quiet", "--threads", "1"]) == 0
    entry = json.loads((tmp_path / "manifest.json").read_text())["tiny"]
    assert entry["eps"] == pytest.approx(2 / 255) and entry["method"] == "ibp" and entry["epochs"] == 1
    state = torch.load(tmp_path / "tiny.pt", map_location="cpu", weights_only=True)
    zoo.build_torch("tiny").load_state_dict(state, strict=True)
    with pytest.raises(SystemExit):
        zt.main(["--help"])
    assert "--method" in capsys.readouterr().out


def test_threads_follow_omp_num_threads_and_every_epoch_logs_an_eta(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # neither the default (2) nor the test's own setting
    lines = []
    _, metrics = zt.train("tiny", method="standard", epochs=2, batch_size=16, n_train=32, n_test=16,
                          log=lambda msg: lines.append((msg, torch.get_num_threads())))
    assert metrics["threads"] == 3 and {t for _, t in lines} == {3}
    assert "2 epoch(s) of 2 step(s), 3 thread(s)" in lines[0][0]
    assert [bool(re.search(rf"epoch {e}/2: loss [\d.]+  \([\d.]+ s, ETA \d+ s\)", m)) for (m, _), e in zip(lines[1:], (1, 2))] \
        == [True, True] and lines[-1][0].endswith("ETA 0 s)")
    _, metrics = zt.train("tiny", method="standard", epochs=1, n_train=16, n_test=16, threads=1)  # --threads wins
    assert metrics["threads"] == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "four")
    with pytest.raises(InputError, match="OMP_NUM_THREADS must be a positive integer"):
        zt.train("tiny", epochs=1, n_train=16, n_test=16)
