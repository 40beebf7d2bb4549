"""``stverify radius``: the bracket it prints is the one ``max_safe_radius`` computes, and the counterexample
at its upper end replays."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import tiny_network
from stverify import counterexample, load_network, load_sample, max_safe_radius
from stverify.cli import main as cli_main
from stverify.errors import InputError
from stverify.interchange.onnx_writer import network_to_onnx
from stverify.replay import replay
from stverify.threats import AnyFrames

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A random tiny network as ONNX and a MedMNIST-format .npz of inputs it classifies as labelled."""
    tmp = tmp_path_factory.mktemp("radius")
    net = tiny_network(0)
    images = np.random.default_rng(0).integers(0, 256, size=(4, 3, 5, 5), dtype=np.uint8)
    labels = net.predict(images[:, None] / 255.0).reshape(-1, 1)
    np.savez(tmp / "d.npz", **{f"{s}_{p}": a for s in ("train", "val", "test")
                               for p, a in (("images", images), ("labels", labels))})
    onnx.save(network_to_onnx(net), tmp / "m.onnx")
    return str(tmp / "m.onnx"), str(tmp / "d.npz")


def test_bracket_matches_max_safe_radius(files, capsys):
    model, data = files
    argv = ["radius", "--model", model, "--data", data, "--index", "1", "--threat", "anyframes:k=1", "--tol", "1e-3",
            "--eps-max", "0.5", "--timeout", "60"]
    assert cli_main(argv + ["--json", "--counterexample"]) == 0
    out = json.loads(capsys.readouterr().out)
    net, (x, y) = load_network(model), load_sample(data, "test", 1)
    api = max_safe_radius(net, x, y, AnyFrames(0.0, 1), tol=1e-3, eps_max=0.5)
    assert out["exact"] and api.exact and out["threat"] == "anyframes:eps=*,k=1" and out["label"] == y
    assert out["lower"] <= out["upper"] <= out["lower"] + 1e-3
    assert max(out["lower"], api.lower) <= min(out["upper"], api.upper) + 1e-9  # both brackets hold the radius
    assert out["upper"] < 0.5
    cex = np.array(out["counterexample"])
    assert replay(net, x, y, AnyFrames(out["upper"], 1), cex).ok
    info = out["counterexample_info"]
    assert info["replays"] and len(info["frames_changed"]) == 1 and info["predicted"] != y
    assert abs(info["max_abs_change"] - out["upper"]) < 1e-12
    saved = files[0].replace("m.onnx", "cex.npz")
    assert cli_main(argv + ["--save-counterexample", saved]) == 0  # the human form, and the counterexample file
    c = counterexample.load(saved)
    assert c["label"] == y and np.array_equal(c["x0"], x) and np.array_equal(c["counterexample"], cex)
    assert c["threat"].spec() == AnyFrames(out["upper"], 1).spec() and c["frames"] == info["frames_changed"]
    err = capsys.readouterr().err
    lo, hi = map(float, re.search(r"max safe radius in \[([^,]+), ([^\]]+)\]: exact to 0.001", err).groups())
    assert max(lo, api.lower) <= min(hi, api.upper) + 1e-6  # printed to 6 digits
    assert "counterexample at the upper end" in err and "replays: yes" in err


def test_no_counterexample_below_eps_max_and_user_errors(files, capsys):
    model, data = files
    assert cli_main(["radius", "--model", model, "--data", data, "--index", "1", "--threat", "linf:eps=2/255",
                     "--eps-max", "1e-4", "--tol", "1e-5"]) == 0
    err = capsys.readouterr().err
    assert "no counterexample up to eps_max = 0.0001" in err and "linf:eps=*" in err
    for argv, words in [(["--threat", "anyframes:k=7"], "k must be in 1..T=3"),
                        (["--threat", "blob"], "unknown threat kind 'blob'"),
                        (["--threat", "linf", "--index", "9"], "index 9 out of range"),
                        (["--threat", "linf", "--label", "-1"], "--label -1 is not a class of the model"),
                        (["--threat", "linf", "--timeout", "nan"], "--timeout must be > 0 seconds"),
                        (["--threat", "linf", "--save-counterexample", str(Path(data).parent)], "is a directory"),
                        (["--threat", "linf", "--tol", "0"], "--tol must be > 0"),  # would bisect until the timeout
                        (["--threat", "linf", "--eps-max", "0"], "--eps-max must be > 0"),
                        (["--threat", "linf", "--eps-max", "full"], "--eps-max must be finite")]:
        assert cli_main(["radius", "--model", model, "--data", data] + argv) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("kw,words", [({"tol": 0.0}, "tol must be > 0"), ({"tol": -1.0}, "tol must be > 0"),
                                      ({"eps_max": 0.0}, "eps_max must be > 0")])
def test_max_safe_radius_refuses_a_tolerance_it_could_never_reach(kw, words):
    net = tiny_network(0)
    with pytest.raises(InputError, match=words):
        max_safe_radius(net, np.full(net.input_shape, 0.5), 0, AnyFrames(0.0, 1), timeout=5, **kw)
