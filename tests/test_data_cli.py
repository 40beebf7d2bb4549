"""--data / --layout / --domain on the command line: dataset names on verify, radius and export;
channel-last float clips; ambiguity, inputs outside the domain and object arrays refused with exit 2;
the input verified is the one the layout and domain say (same bounds as the API on that input)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from conftest import tiny_network
from stverify import load_network, load_sample, verify
from stverify.cli import main as cli_main
from stverify.interchange.onnx_writer import network_to_onnx

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _model(tmp, shape, seed=0):
    """A random classifier as ONNX, and the network that file loads as (float32 weights)."""
    onnx.save(network_to_onnx(tiny_network(seed, shape=shape, n_classes=3)), tmp / f"m{seed}.onnx")
    return load_network(tmp / f"m{seed}.onnx"), str(tmp / f"m{seed}.onnx")


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def _refused(argv, capsys, *parts):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for p in parts:
        assert p in err, (p, err)


def test_a_dataset_name_on_verify_radius_and_export(tmp_path, capsys):
    _, model = _model(tmp_path, (1, 4, 10, 10))
    assert cli_main(["verify", "--model", model, "--data", "video", "--index", "2", "--label", "1", "--threat",
                     "linf:eps=1/255", "--json"]) == 0
    out = _json(capsys)
    assert out["instance"]["layout"] == "nthw" and out["instance"]["data"] == "video" and out["status"] != "error"
    assert cli_main(["radius", "--model", model, "--data", "video", "--index", "2", "--label", "1", "--threat", "linf",
                     "--eps-max", "0.02", "--tol", "0.01", "--timeout", "20", "--json"]) == 0
    assert _json(capsys)["data"] == "video"
    assert cli_main(["export", "--model", model, "--data", "video", "--index", "2", "--label", "1", "--threat", "linf:eps=1/255",
                     "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "instances.csv").read_text().count("\n") == 1


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A 2-channel float clip file, channel-last, with regression targets, and a model of its shape."""
    tmp = tmp_path_factory.mktemp("clips")
    x = np.random.default_rng(0).uniform(size=(3, 2, 4, 5, 5)).astype(np.float32)  # N x C x T x H x W
    np.savez(tmp / "clips.npz", x=x.transpose(0, 2, 3, 4, 1), y=np.array([0.3, -0.1, 0.05], np.float32))
    net, model = _model(tmp, (2, 4, 5, 5))
    return tmp, x, net, model


def test_channel_last_float_clips_verify_the_input_they_hold(clips, capsys):
    tmp, x, net, model = clips
    argv = ["verify", "--model", model, "--data", str(tmp / "clips.npz"), "--index", "1", "--threat",
            "anyframes:k=1,eps=2/255", "--json"]
    _refused(argv, capsys, "clips.npz", "regression target -0.1, not a class label", "--label")
    assert cli_main(argv + ["--label", "2"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["instance"]["layout"] == "nthwC" and "as nthwC (N x T x H x W x C; the model's input shape" in captured.err
    assert out["margin_lb"] == verify(net, x[1].astype(np.float64), 2, "anyframes:k=1,eps=2/255").margin_lb


def test_ambiguous_layout_is_refused_and_settled_by_layout(tmp_path, capsys):
    x = np.random.default_rng(1).uniform(size=(2, 3, 3, 3, 3))
    np.savez(tmp_path / "cube.npz", test_images=x, test_labels=np.array([0, 1]))
    net, model = _model(tmp_path, (3, 3, 3, 3))
    argv = ["verify", "--model", model, "--data", str(tmp_path / "cube.npz"), "--threat", "linf:eps=0.01", "--json"]
    _refused(argv, capsys, "cube.npz", "(2, 3, 3, 3, 3)", "ambiguous", "--layout nCthw or --layout nthwC")
    for layout, x0 in (("nCthw", x[0]), ("nthwC", x[0].transpose(3, 0, 1, 2))):
        assert cli_main(argv + ["--layout", layout]) == 0
        assert _json(capsys)["margin_lb"] == verify(net, x0, 0, "linf:eps=0.01").margin_lb
    _refused(argv + ["--layout", "nhwc"], capsys, "--layout", "invalid choice")


def test_the_domain_is_stated_checked_and_used(tmp_path, capsys):
    x = np.random.default_rng(2).uniform(-1, 1, size=(2, 1, 3, 5, 5))
    np.savez(tmp_path / "pm1.npz", x=x, y=np.array([2, 0]))
    net, model = _model(tmp_path, (1, 3, 5, 5))
    argv = ["verify", "--model", model, "--data", str(tmp_path / "pm1.npz"), "--threat", "linf:eps=0.05", "--json"]
    _refused(argv, capsys, "pm1.npz", "outside the data domain [0, 1]", "--domain LO,HI")
    assert cli_main(argv + ["--domain", "-1,1"]) == 0
    out = _json(capsys)
    assert out["instance"]["domain"] == [-1.0, 1.0]
    assert out["margin_lb"] == verify(net, x[0], 2, "linf:eps=0.05", domain=(-1, 1)).margin_lb
    _refused(argv + ["--domain", "-1"], capsys, "--domain must be LO,HI such as 0,1 or -1,1, got '-1'")
    _refused(argv + ["--domain", "1,-1"], capsys, "--domain: domain must be finite with lo < hi")
    for command in (["radius", "--threat", "linf"], ["export", "--threat", "linf:eps=0.05", "--out", str(tmp_path / "o")]):
        _refused([command[0], "--model", model, "--data", str(tmp_path / "pm1.npz"), *command[1:]], capsys,
                 "outside the data domain [0, 1]")
    assert not (tmp_path / "o").exists()
    assert cli_main(["export", "--model", model, "--data", str(tmp_path / "pm1.npz"), "--domain", "-1,1", "--threat",
                     "linf:eps=0.05", "--out", str(tmp_path / "o")]) == 0
    text = next((tmp_path / "o" / "vnnlib").iterdir()).read_text()
    lo = min(x[0].min() - 0.05, 0.0)
    assert lo < 0 and f"(>= X_{int(np.argmin(x[0]))} {max(x[0].min() - 0.05, -1.0)!r})" in text
    assert load_sample(tmp_path / "pm1.npz", domain=(-1, 1))[1] == 2


def test_object_arrays_exit_2(tmp_path, capsys):
    np.savez(tmp_path / "obj.npz", test_images=np.array([{"a": 1}], dtype=object), test_labels=np.array([[0]]))
    _refused(["verify", "--model", "tiny", "--data", str(tmp_path / "obj.npz"), "--threat", "linf:eps=0.01"], capsys,
             "obj.npz", "'test_images'", "Python objects")


def test_a_bench_config_takes_the_new_names_and_refuses_regression_targets(tmp_path):
    from stverify.bench.config import expand, load_config
    from stverify.errors import InputError

    _, model = _model(tmp_path, (2, 4, 10, 10))
    (tmp_path / "b.toml").write_text(f'[[models]]\nname = "m"\nfile = "{model}"\ndata = "driving2"\n[[threats]]\n'
                                     'kind = "linf"\neps = ["1/255"]\n[[methods]]\nname = "s"\nmethod = "stbp"\n')
    with pytest.raises(InputError, match="model m: driving2 holds regression targets, not class labels: give the model an output property"):
        expand(load_config(tmp_path / "b.toml"))
