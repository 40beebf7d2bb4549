"""Bad input, as a new user would give it: every case a clear one-line error, never a traceback or a verdict.

The CLI table runs ``stverify`` in-process over every class of bad input (labels, threats, options,
model files, state files, ONNX variants, data files, demo / train / bench / render arguments) and
asserts exit code 2, exactly one line on stderr naming the problem, nothing on stdout.  The API
tests assert the exact error type.  A hypothesis test fuzzes the threat grammar.
"""
from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import stverify as sv
from stverify import zoo
from stverify.bench import load_config, run_bench
from stverify.bench.runner import locked
from stverify.cli import main
from stverify.data import load_npz, load_sample
from stverify.errors import InputError
from stverify.network import Conv3d, Flatten, Linear, Network, UnsupportedLayerError, from_torch, load_network
from stverify.threats import Linf, ThreatError, parse_threat

from conftest import tiny_network

TINY = "tiny"  # zoo model on the generated videos, input 1 x 4 x 10 x 10, 4 classes
OK_THREAT = "linf:eps=1/255"


# ------------------------------------------------------------------------------------------ files
def _onnx_linear(w: np.ndarray, shape=(1, 1, 4, 10, 10)) -> onnx.ModelProto:
    """Flatten + Gemm with weights ``w`` (classes x inputs)."""
    g = helper.make_graph([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "W"], ["y"], transB=1)],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [shape[0], w.shape[0]])],
                          [numpy_helper.from_array(w.astype(np.float32), "W")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _external(folder: Path, location: str | None) -> Path:
    """A model whose weights live in external data; ``location`` rewrites where it points (None: deleted)."""
    folder.mkdir()
    path = folder / "ext.onnx"
    onnx.save_model(_onnx_linear(np.ones((4, 400))), path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.data", size_threshold=0)
    if location is None:
        (folder / "ext.data").unlink()
    else:
        m = onnx.load(path, load_external_data=False)
        for t in m.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        onnx.save(m, path)
    return path


def _npz(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    np.savez(path, test_images=images, test_labels=labels)
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, str]:
    """Every bad file of the table, by name."""
    d = tmp_path_factory.mktemp("bad")
    f: dict[str, Path] = {}
    good = d / "good.onnx"
    onnx.save(_onnx_linear(np.random.default_rng(0).normal(size=(4, 400))), good)
    f["good.onnx"] = good
    (d / "empty.onnx").write_bytes(b"")
    f["empty.onnx"] = d / "empty.onnx"
    (d / "garbage.onnx").write_bytes(b"\x00garbage\xff\xffnot an onnx model")
    f["garbage.onnx"] = d / "garbage.onnx"
    (d / "truncated.onnx").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    f["truncated.onnx"] = d / "truncated.onnx"
    (d / "dir.onnx").mkdir()
    f["dir.onnx"] = d / "dir.onnx"
    f["ext-missing.onnx"] = _external(d / "ext1", None)
    f["ext-outside.onnx"] = _external(d / "ext2", "../../etc/passwd")
    f["ext-absolute.onnx"] = _external(d / "ext3", "/etc/passwd")
    w = np.random.default_rng(1).normal(size=(4, 400))
    w[2, 7] = np.nan
    onnx.save(_onnx_linear(w), d / "nan.onnx")
    f["nan.onnx"] = d / "nan.onnx"
    w[2, 7] = np.inf
    onnx.save(_onnx_linear(w), d / "inf.onnx")
    f["inf.onnx"] = d / "inf.onnx"
    onnx.save(_onnx_linear(np.ones((4, 8 * 16 * 16)), shape=(1, 1, 8, 16, 16)), d / "other-shape.onnx")
    f["other-shape.onnx"] = d / "other-shape.onnx"
    (d / "model.h5").write_bytes(b"hdf5")
    f["model.h5"] = d / "model.h5"

    state = zoo.build_torch(TINY).state_dict()
    torch.save(state, d / "tiny.pt")
    f["tiny.pt"] = d / "tiny.pt"
    torch.save([v for v in state.values()], d / "list.pt")
    f["list.pt"] = d / "list.pt"
    torch.save(nn.Linear(2, 2), d / "module.pt")
    f["module.pt"] = d / "module.pt"
    torch.save({**state, next(iter(state)): torch.zeros(3, 3)}, d / "shapes.pt")
    f["shapes.pt"] = d / "shapes.pt"
    torch.save({k: v for i, (k, v) in enumerate(state.items()) if i}, d / "missing.pt")
    f["missing.pt"] = d / "missing.pt"
    nan_state = {k: v.clone() for k, v in state.items()}
    next(iter(nan_state.values())).view(-1)[0] = float("nan")
    torch.save(nan_state, d / "nan.pt")
    f["nan.pt"] = d / "nan.pt"
    (d / "truncated.pt").write_bytes((d / "tiny.pt").read_bytes()[:60])
    f["truncated.pt"] = d / "truncated.pt"
    (d / "empty.pt").write_bytes(b"")
    f["empty.pt"] = d / "empty.pt"

    imgs = np.zeros((3, 4, 10, 10), np.uint8)
    f["neg-label.npz"] = _npz(d / "neg-label.npz", imgs, np.array([[0], [-1], [2]]))
    f["big-label.npz"] = _npz(d / "big-label.npz", imgs, np.array([[0], [7], [2]]))
    f["float.npz"] = _npz(d / "float.npz", imgs.astype(np.float32) + 2, np.zeros((3, 1), int))
    f["volume.npz"] = _npz(d / "volume.npz", np.zeros((2, 8, 16, 16), np.uint8), np.zeros((2, 1), int))
    f["nolabels.npz"] = d / "nolabels.npz"
    np.savez(f["nolabels.npz"], test_images=imgs)
    (d / "junk.npz").write_bytes(b"not a zip file")
    f["junk.npz"] = d / "junk.npz"
    (d / "data-dir.npz").mkdir()
    f["data-dir.npz"] = d / "data-dir.npz"
    (d / "notcex.npz").write_bytes((d / "neg-label.npz").read_bytes())
    f["notcex.npz"] = d / "notcex.npz"
    f["nowhere"] = d / "no" / "such" / "folder" / "cex.npz"
    f["missing"] = d / "missing.onnx"
    f["dir"] = d
    (d / "empty-dir").mkdir()
    f["empty-dir"] = d / "empty-dir"
    return {k: str(v) for k, v in f.items()}


def _bench_config(folder: Path, name: str, top: str = "", samples: str = "n = 1", methods: str = 'name = "stbp"\nmethod = "stbp"',
                  threats: str = 'kind = "linf"\neps = ["1/255"]', models: str = 'name = "tiny"') -> str:
    path = folder / f"{name}.toml"
    path.write_text(f"{top}\n[[models]]\n{models}\n[samples]\n{samples}\n[[threats]]\n{threats}\n[[methods]]\n{methods}\n")
    return str(path)


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("configs")
    c = {
        "threads0": _bench_config(d, "threads0", "threads = 0"),
        "threads-float": _bench_config(d, "threads-float", "threads = 1.5"),
        "n-neg": _bench_config(d, "n-neg", samples="n = -3"),
        "n-str": _bench_config(d, "n-str", samples='n = "ten"'),
        "seed-neg": _bench_config(d, "seed-neg", samples="n = 1\nseed = -1"),
        "timeout-nan": _bench_config(d, "timeout-nan", "timeout = nan"),
        "timeout-neg": _bench_config(d, "timeout-neg", "timeout = -5"),
        "grace-neg": _bench_config(d, "grace-neg", "grace = -1"),
        "split": _bench_config(d, "split", samples='n = 1\nsplit = "dev"'),
        "select": _bench_config(d, "select", samples='n = 1\nselect = "best"'),
        "unknown-key": _bench_config(d, "unknown-key", "timeuot = 5"),
        "eps-empty": _bench_config(d, "eps-empty", threats='kind = "linf"\neps = []'),
        "eps-bad": _bench_config(d, "eps-bad", threats='kind = "linf"\neps = ["1e400"]'),
        "option": _bench_config(d, "option", methods='name = "s"\nmethod = "stbp"\noptions = { solver = "highs" }'),
        "method": _bench_config(d, "method", methods='name = "s"\nmethod = "nope"'),
        "plugin": _bench_config(d, "plugin", 'plugins = ["no_such_module_xyz"]'),
        "model-file": _bench_config(d, "model-file", models='name = "m"\nfile = "missing.onnx"\ndata = "video"'),
        "models-table": str(d / "models-table.toml"),
        "not-toml": str(d / "not-toml.toml"),
        "missing": str(d / "missing.toml"),
    }
    Path(c["models-table"]).write_text('[models]\nname = "tiny"\n[[threats]]\nkind = "linf"\neps = ["1/255"]\n'
                                       '[[methods]]\nname = "s"\nmethod = "stbp"\n')
    Path(c["not-toml"]).write_text("this is = = not toml\n")
    return c


# ------------------------------------------------------------------------------------------ the CLI table
V = ["verify", "--model", TINY, "--threat", OK_THREAT]
CASES = [
    # labels
    ("label-negative", V + ["--label", "-1"], ["--label", "-1", "0..3"]),
    ("label-too-big", V + ["--label", "4"], ["--label", "4", "0..3"]),
    ("label-not-int", V + ["--label", "one"], ["--label", "invalid int"]),
    ("npz-label-negative", ["verify", "--model", TINY, "--data", "{neg-label.npz}", "--index", "1", "--threat", OK_THREAT],
     ["neg-label.npz", "negative label -1"]),
    ("npz-label-too-big", ["verify", "--model", TINY, "--data", "{big-label.npz}", "--index", "1", "--threat", OK_THREAT],
     ["big-label.npz", "label", "7", "0..3"]),
    # threats
    ("threat-empty", ["verify", "--model", TINY, "--threat", ""], ["--threat", "KIND:key=value"]),
    ("threat-kind", ["verify", "--model", TINY, "--threat", "box:eps=1"], ["--threat", "unknown threat kind 'box'"]),
    ("threat-missing-eps", ["verify", "--model", TINY, "--threat", "anyframes:k=1"], ["missing eps"]),
    ("threat-eps-huge", ["verify", "--model", TINY, "--threat", "linf:eps=1e400"], ["1e400", "too large"]),
    ("threat-eps-negative", ["verify", "--model", TINY, "--threat", "linf:eps=-1"], ["eps must be >= 0"]),
    ("threat-eps-nan", ["verify", "--model", TINY, "--threat", "linf:eps=nan"], ["eps expects"]),
    ("threat-frames-huge", ["verify", "--model", TINY, "--threat", "frames:eps=1/255,frames=0-100000000000"],
     ["frames=100000000000", "beyond any input"]),
    ("threat-frame-out", ["verify", "--model", TINY, "--threat", "frames:eps=1/255,frames=9"], ["frames [9]", "T=4"]),
    ("threat-k-zero", ["verify", "--model", TINY, "--threat", "anyframes:eps=1/255,k=0"], ["k must be >= 1"]),
    ("threat-k-big", ["verify", "--model", TINY, "--threat", "anyframes:eps=1/255,k=5"], ["k must be in 1..T=4"]),
    ("threat-patch-out", ["verify", "--model", TINY, "--threat", "patch:eps=1/255,t=0-1,y=8,x=8,h=4,w=4"], ["outside the 10x10"]),
    ("threat-anypatch-big", ["verify", "--model", TINY, "--threat", "anypatch:eps=1/255,len=2,h=11,w=3"], ["does not fit"]),
    ("threat-duplicate", ["verify", "--model", TINY, "--threat", "linf:eps=1,eps=2"], ["given twice"]),
    ("threat-stride-zero", ["verify", "--model", TINY, "--threat", "anypatch:eps=1/255,len=2,h=3,w=3,stride=0"], ["stride"]),
    # numbers and options
    ("timeout-nan", V + ["--timeout", "nan"], ["--timeout", "nan"]),
    ("timeout-negative", V + ["--timeout", "-1"], ["--timeout", "> 0"]),
    ("timeout-zero", V + ["--timeout", "0"], ["--timeout", "> 0"]),
    ("method-unknown", V + ["--method", "magic"], ["--method 'magic'", "available"]),
    ("solver-with-stbp", V + ["--solver", "highs"], ["--solver does not apply to --method stbp"]),
    ("bounds-with-smt", V + ["--method", "smt", "--bounds", "lp"], ["--bounds does not apply to --method smt"]),
    ("relaxation-with-milp", V + ["--method", "milp", "--relaxation", "ibp"], ["--relaxation does not apply"]),
    ("solver-unknown", V + ["--method", "milp", "--solver", "cplex"], ["--solver", "invalid choice: 'cplex'"]),
    ("bounds-unknown", V + ["--method", "milp", "--bounds", "exact"], ["--bounds", "invalid choice: 'exact'"]),
    ("index-out", V + ["--index", "999"], ["index 999 out of range"]),
    ("index-negative", V + ["--index", "-1"], ["index -1 out of range"]),
    ("split-unknown", V + ["--split", "dev"], ["--split", "invalid choice"]),
    ("save-nowhere", V + ["--save-counterexample", "{nowhere}"], ["--save-counterexample", "does not exist"]),
    ("save-dir", V + ["--save-counterexample", "{dir}"], ["--save-counterexample", "is a directory"]),
    # model files
    ("model-missing", ["verify", "--model", "{missing}", "--data", "{neg-label.npz}", "--threat", OK_THREAT],
     ["missing.onnx", "neither a zoo model"]),
    ("model-dir", ["verify", "--model", "{dir.onnx}", "--data", "{neg-label.npz}", "--threat", OK_THREAT], ["dir.onnx", "directory"]),
    ("onnx-empty", ["verify", "--model", "{empty.onnx}", "--data", "{big-label.npz}", "--threat", OK_THREAT], ["empty.onnx", "empty"]),
    ("onnx-garbage", ["verify", "--model", "{garbage.onnx}", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["garbage.onnx", "not an ONNX model"]),
    ("onnx-truncated", ["verify", "--model", "{truncated.onnx}", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["truncated.onnx", "ONNX"]),
    ("onnx-external-missing", ["verify", "--model", "{ext-missing.onnx}", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["ext.onnx", "external data"]),
    ("onnx-external-outside", ["verify", "--model", "{ext-outside.onnx}", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["ext.onnx", "external data", "outside"]),
    ("onnx-external-absolute", ["verify", "--model", "{ext-absolute.onnx}", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["ext.onnx", "external data", "absolute"]),
    ("onnx-nan-weights", ["verify", "--model", "{nan.onnx}", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["nan.onnx", "non-finite weight"]),
    ("onnx-inf-weights", ["verify", "--model", "{inf.onnx}", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["inf.onnx", "non-finite weight"]),
    ("onnx-other-shape", ["verify", "--model", "{other-shape.onnx}", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["big-label.npz", "(1, 4, 10, 10)", "(1, 8, 16, 16)"]),
    ("onnx-no-data", ["verify", "--model", "{good.onnx}", "--threat", OK_THREAT], ["--data is required"]),
    ("extension-unknown", ["verify", "--model", "{model.h5}", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["model.h5", "unknown extension"]),
    ("arch-with-zoo-model", V + ["--arch", "small"], ["--arch applies to a .pt"]),
    ("arch-with-onnx", ["verify", "--model", "{good.onnx}", "--arch", "tiny", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["--arch applies to a .pt"]),
    ("pt-without-arch", ["verify", "--model", "{tiny.pt}", "--data", "{big-label.npz}", "--threat", OK_THREAT], ["tiny.pt", "arch"]),
    ("pt-unknown-arch", ["verify", "--model", "{tiny.pt}", "--arch", "resnet", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["unknown model 'resnet'"]),
    ("pt-wrong-arch", ["verify", "--model", "{tiny.pt}", "--arch", "small", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["tiny.pt", "does not fit architecture 'small'"]),
    ("pt-wrong-shapes", ["verify", "--model", "{shapes.pt}", "--arch", "tiny", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["shapes.pt", "has shape (3, 3)"]),
    ("pt-missing-keys", ["verify", "--model", "{missing.pt}", "--arch", "tiny", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["missing.pt", "missing"]),
    ("pt-list", ["verify", "--model", "{list.pt}", "--arch", "tiny", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["list.pt", "holds a list", "state dict"]),
    ("pt-pickled-module", ["verify", "--model", "{module.pt}", "--arch", "tiny", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["module.pt", "pickled", "state_dict()"]),
    ("pt-nan", ["verify", "--model", "{nan.pt}", "--arch", "tiny", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["nan.pt", "non-finite weight"]),
    ("pt-truncated", ["verify", "--model", "{truncated.pt}", "--arch", "tiny", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["truncated.pt", "not a readable torch file"]),
    ("pt-empty", ["verify", "--model", "{empty.pt}", "--arch", "tiny", "--data", "{big-label.npz}", "--threat", OK_THREAT],
     ["empty.pt", "empty"]),
    # data files
    ("data-missing", V + ["--data", "{missing}"], ["missing.onnx", "not found"]),
    ("data-dir", V + ["--data", "{data-dir.npz}"], ["data-dir.npz", "directory"]),
    ("data-junk", V + ["--data", "{junk.npz}"], ["junk.npz", "not an .npz archive"]),
    ("data-float", V + ["--data", "{float.npz}"], ["float.npz", "[2, 2]", "outside the data domain [0, 1]", "--domain"]),
    ("data-no-labels", V + ["--data", "{nolabels.npz}"], ["nolabels.npz", "test_labels"]),
    ("data-other-shape", V + ["--data", "{volume.npz}"], ["volume.npz", "(1, 8, 16, 16)", "(1, 4, 10, 10)"]),
    # other sub-commands
    ("demo-n-negative", ["demo", "-n", "-1"], ["-n must be >= 1"]),
    ("demo-n-zero", ["demo", "-n", "0"], ["-n must be >= 1"]),
    ("demo-timeout-nan", ["demo", "--timeout", "nan"], ["--timeout", "nan"]),
    ("demo-threat", ["demo", "--threats", "linf:epsilon=2"], ["--threats", "missing eps"]),
    ("demo-model", ["demo", "--model", "nope"], ["unknown model 'nope'"]),
    ("train-model", ["train", "nope"], ["invalid choice: 'nope'"]),
    ("train-epochs", ["train", TINY, "--epochs", "0", "--out", "{dir}"], ["epochs must be >= 1"]),
    ("train-eps", ["train", TINY, "--eps", "1e400", "--out", "{dir}"], ["--eps", "too large"]),
    ("train-threads", ["train", TINY, "--threads", "0", "--out", "{dir}"], ["threads must be >= 1"]),
    ("render-missing", ["render", "{missing}"], ["missing.onnx"]),
    ("render-not-cex", ["render", "{notcex.npz}"], ["notcex.npz", "not a stverify counterexample"]),
    ("report-empty", ["report", "{empty-dir}"], ["no results"]),
    ("command-unknown", ["frobnicate"], ["invalid choice: 'frobnicate'"]),
    ("command-missing", [], ["required: command"]),
    ("option-unknown", V + ["--fast"], ["unrecognized arguments: --fast"]),
]
BENCH_CASES = [
    ("threads0", ["threads must be in 1..1024, got 0"]),
    ("threads-float", ["threads must be an integer"]),
    ("n-neg", ["samples.n must be >= 1, got -3"]),
    ("n-str", ["samples.n must be an integer"]),
    ("seed-neg", ["samples.seed must be >= 0"]),
    ("timeout-nan", ["timeout must be finite"]),
    ("timeout-neg", ["timeout must be > 0"]),
    ("grace-neg", ["grace must be >= 0"]),
    ("split", ["samples.split"]),
    ("select", ["samples.select"]),
    ("unknown-key", ["unknown key(s) timeuot"]),
    ("eps-empty", ["eps must be a non-empty list"]),
    ("eps-bad", ["1e400"]),
    ("option", ["option(s) solver do not apply to 'stbp'"]),
    ("method", ["unknown method(s) nope"]),
    ("plugin", ["cannot import 'no_such_module_xyz'"]),
    ("model-file", ["missing.onnx", "does not exist"]),
    ("models-table", ["models must be an array of tables"]),
    ("not-toml", ["not-toml.toml"]),
    ("missing", ["missing.toml", "not found"]),
]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_one_line_error(rc: int, out: str, err: str, words: list[str]):
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert out == ""


@pytest.mark.parametrize("name,argv,words", CASES, ids=[c[0] for c in CASES])
def test_cli_bad_input_is_one_line_exit_2(name, argv, words, bad, capsys, torch_one_thread):
    argv = [bad[a[1:-1]] if a.startswith("{") else a for a in argv]
    _assert_one_line_error(*_run(argv, capsys), words)


@pytest.mark.parametrize("name,words", BENCH_CASES, ids=[c[0] for c in BENCH_CASES])
def test_bench_config_is_range_checked(name, words, configs, capsys, tmp_path):
    out = tmp_path / "out"
    _assert_one_line_error(*_run(["bench", configs[name], "--out", str(out)], capsys), words)
    assert not out.exists()  # nothing written for a refused config
    with pytest.raises(InputError):
        run_bench(load_config(configs[name]), out)


@pytest.mark.parametrize("argv,words", [(["--label", "-1"], ["--label -1", "0..3"]),
                                        (["--timeout", "nan"], ["--timeout", "nan"]),
                                        (["--index", "999"], ["index 999 out of range"])])
def test_export_refuses_before_writing_anything(argv, words, capsys, tmp_path, torch_one_thread):
    out = tmp_path / "out"
    _assert_one_line_error(*_run(["export", "--model", TINY, "--threat", OK_THREAT, "--out", str(out)] + argv, capsys),
                           words)
    assert not out.exists()


def test_the_shipped_configs_pass_the_checks():
    from stverify.verify import refused_options

    configs = list((Path(__file__).resolve().parents[1] / "experiments" / "tradeoff").glob("*.toml"))
    assert configs
    for path in configs:
        cfg = load_config(path)
        assert all(not refused_options(m.method, m.options) for m in cfg.methods), path


def test_bench_workers_and_existing_results_are_refused(configs, capsys, tmp_path):
    cfg = _bench_config(tmp_path, "ok")
    _assert_one_line_error(*_run(["bench", cfg, "--out", str(tmp_path / "o"), "--workers", "0"], capsys), ["--workers", ">= 1"])
    out = tmp_path / "done"
    out.mkdir()
    results = out / "results.jsonl"
    results.write_text('{"status": "verified"}\n')
    before = results.read_bytes()
    _assert_one_line_error(*_run(["bench", cfg, "--out", str(out)], capsys), ["already holds 1 results", "--resume"])
    _assert_one_line_error(*_run(["bench", configs["threads0"], "--out", str(out), "--resume"], capsys), ["threads"])
    _assert_one_line_error(*_run(["bench", configs["model-file"], "--out", str(out), "--resume"], capsys), ["missing.onnx"])
    assert results.read_bytes() == before and not (out / "config.toml").exists()


def test_a_second_runner_is_refused_and_a_stale_lock_is_not(tmp_path, capsys):
    cfg = _bench_config(tmp_path, "ok")
    out = tmp_path / "out"
    with locked(out):  # a runner holds the folder
        _assert_one_line_error(*_run(["bench", cfg, "--out", str(out)], capsys), [str(out), "in use by another", "pid"])
        assert not (out / "results.jsonl").exists()
    (out / ".lock").write_text("pid 999999999 on a-dead-host, started long ago\n")  # left by a killed run: no lock held
    assert _run(["bench", cfg, "--out", str(out)], capsys)[0] == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 1


def test_the_lock_is_held_across_processes(tmp_path):
    """flock is per open file: a second process sees the first one's lock, and not after it is gone."""
    out = tmp_path / "out"
    code = ("import sys, time; from pathlib import Path; from stverify.bench.runner import locked\n"
            "with locked(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"pid {holder.pid}"):
            with locked(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with locked(out):  # the holder died: its lock went with it
        pass


# ------------------------------------------------------------------------------------------ exit codes, for real
def _cli(*args, debug: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stverify.cli", *args, *(["--debug"] if debug else [])],
                          capture_output=True, text=True, timeout=300)


def test_exit_codes_in_a_real_process():
    r = _cli("verify", "--model", TINY, "--threat", OK_THREAT, "--label", "-1")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    r = _cli("verify", "--model", TINY, "--threat", OK_THREAT, "--label", "-1", debug=True)
    assert r.returncode == 2 and "Traceback" in r.stderr and r.stderr.strip().splitlines()[-1].startswith("error: --label")


def test_a_bug_is_reported_as_one_line_exit_3_with_the_traceback_under_debug():
    """An internal error in any sub-command, even one an extension registers."""
    code = ("import sys, stverify.cli as c\n"
            "base = c._extensions\n"
            "def boom(sub):\n    sub.add_parser('boom').set_defaults(func=lambda args: {}['missing'])\n"
            "c._extensions = lambda: base() + [boom]\n"
            "sys.exit(c.main(sys.argv[1:]))\n")
    for debug in (False, True):
        r = subprocess.run([sys.executable, "-c", code, "boom"] + (["--debug"] if debug else []), capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 3 and "a bug in stverify" in r.stderr.splitlines()[-1] and "KeyError" in r.stderr
        assert ("Traceback" in r.stderr) == debug and (len(r.stderr.strip().splitlines()) == 1) != debug


# ------------------------------------------------------------------------------------------ the API
@pytest.fixture(scope="module")
def instance():
    net = tiny_network(3)
    x = np.random.default_rng(0).uniform(0.2, 0.8, net.input_shape)
    return net, x, int(net.predict(x))


@pytest.mark.parametrize("y", [-1, 3, 99, 1.0, "0", True, None])
def test_labels_outside_the_classes_are_refused_before_any_verdict(instance, y):
    net, x, _ = instance
    for method in ("stbp", "milp"):
        with pytest.raises(InputError, match="label|class"):
            sv.verify(net, x, y, Linf(0.01), method=method)


def test_the_other_entry_points_check_their_instance_as_verify_does(instance):
    """max_safe_radius, exact_bounds, certify and crosscheck refuse what verify refuses."""
    net, x, y = instance
    for bad_label in (-1, 3, 1.5):
        with pytest.raises(InputError, match="label|class"):
            sv.certify(net, x, bad_label, Linf(0.01))
        with pytest.raises(InputError, match="label|class"):
            sv.crosscheck(net, x, bad_label, Linf(0.01), timeout=5)
    with pytest.raises(InputError, match="non-finite"):
        sv.certify(net, np.where(x > 0.5, np.nan, x), y, Linf(0.01))
    with pytest.raises(InputError, match="label -1 is not a class"):
        sv.max_safe_radius(net, x, -1, "linf:eps=0")
    with pytest.raises(InputError, match="timeout must be > 0"):
        sv.max_safe_radius(net, x, y, "linf:eps=0", timeout=math.nan)
    with pytest.raises(InputError, match="non-finite"):
        sv.exact_bounds(net, np.where(x > 0.5, np.nan, x), "linf:eps=0.01", layer=1)
    with pytest.raises(InputError, match="the model expects"):
        sv.exact_bounds(net, x[:, :1], "linf:eps=0.01", layer=1)


def test_labels_of_the_data_file_are_checked(bad):
    with pytest.raises(InputError, match=r"negative label -1 \(sample 1\)"):
        load_sample(bad["neg-label.npz"], "test", 0)
    with pytest.raises(InputError, match="negative label"):
        load_npz(bad["neg-label.npz"])


@pytest.mark.parametrize("bad_x,words", [
    ("nan", "non-finite voxel"), ("inf", "non-finite voxel"), ("shape", "shape"), ("domain", "outside the data domain"),
    ("text", "array of numbers")])
def test_inputs_must_be_finite_in_shape_and_in_the_domain(instance, bad_x, words):
    net, x, y = instance
    x = x.copy()
    if bad_x in ("nan", "inf"):
        x[0, 1, 2, 2] = float(bad_x)
    arg = {"shape": x[:, :2], "domain": x + 2.0, "text": "x"}.get(bad_x, x)
    with pytest.raises(InputError, match=words):
        sv.verify(net, arg, y, Linf(0.01))


@pytest.mark.parametrize("timeout", [math.nan, -1.0, 0, "5", True])
def test_timeouts_must_be_positive_numbers(instance, timeout):
    net, x, y = instance
    with pytest.raises(InputError, match="timeout"):
        sv.verify(net, x, y, Linf(0.01), method="bab", timeout=timeout)


def test_a_nan_timeout_cannot_switch_a_deadline_off(instance):
    from stverify.complete.bab import verify_bab

    net, x, y = instance
    with pytest.raises(InputError, match="nan"):
        verify_bab(net, x, y, Linf(0.01), timeout=math.nan)


@pytest.mark.parametrize("method,options,words", [
    ("stbp", {"solver": "highs"}, "solver do not apply to method 'stbp'"),
    ("box-ibp", {"relaxation": "crown"}, "relaxation do not apply to method 'box-ibp'"),
    ("milp", {"relaxation": "ibp"}, "relaxation"),
    ("smt", {"bounds": "lp"}, "bounds"),
    ("bab", {"lemmas": False}, "lemmas"),
    ("stbp", {"relaxation": "deep"}, "relaxation must be one of"),
    ("milp", {"solver": "cplex"}, "unknown solver"),
    ("bab", {"solver": "cplex"}, "unknown solver"),
    ("magic", {}, "unknown method"),
])
def test_options_that_do_not_apply_are_refused(instance, method, options, words):
    net, x, y = instance
    with pytest.raises(InputError, match=words):
        sv.verify(net, x, y, Linf(0.01), method=method, **options)


def test_other_arguments_of_verify(instance):
    net, x, y = instance
    with pytest.raises(InputError, match="stverify Network"):
        sv.verify(nn.Linear(2, 2), x, y, Linf(0.01))
    with pytest.raises(InputError, match="domain"):
        sv.verify(net, x, y, Linf(0.01), domain=(1.0, 0.0))
    with pytest.raises(ThreatError, match="T=3"):
        sv.verify(net, x, y, "frames:eps=0.1,frames=3")
    with pytest.raises(InputError, match="threat must be"):
        sv.verify(net, x, y, 0.1)
    with pytest.raises(InputError, match="a label property needs a classifier; state an output property"):  # (a one-output
        # model verifies output properties: test_property_paths)
        sv.verify(Network([Flatten(), Linear(np.ones((1, 4)), [0.0])], (1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), 0, Linf(0.1))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused_when_the_network_is_built(value):
    w = np.ones((2, 4))
    w[1, 2] = value
    with pytest.raises(InputError, match=r"layer 1 \(Linear\(4->2\)\): 1 non-finite weight"):
        Network([Flatten(), Linear(w, np.zeros(2))], (1, 1, 2, 2))
    with pytest.raises(InputError, match="non-finite bias"):
        Network([Conv3d(np.ones((1, 1, 1, 1, 1)), [value]), Flatten()], (1, 1, 2, 2))


def test_batch_norm_with_a_negative_variance_is_refused():
    bn = nn.BatchNorm3d(1).eval()
    bn.running_var.fill_(-1.0)  # sqrt(var + eps) of a negative number
    with pytest.raises(InputError, match="running variance"):
        from_torch(nn.Sequential(nn.Conv3d(1, 1, 1), bn, nn.Flatten()), (1, 1, 2, 2))


def test_train_mode_is_refused_unless_eval_semantics_are_asked_for():
    torch.manual_seed(0)
    bn = nn.BatchNorm3d(2)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    model = nn.Sequential(nn.Conv3d(1, 2, 2), bn, nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(2 * 1 * 2 * 2, 3))
    with pytest.raises(InputError, match=r"train\(\) mode.*'1' \(BatchNorm3d\), '3' \(Dropout\).*model.eval\(\)"):
        from_torch(model, (1, 2, 3, 3))
    with pytest.raises(InputError, match="train"):
        load_network(model, input_shape=(1, 2, 3, 3))
    net = load_network(model, input_shape=(1, 2, 3, 3), as_eval=True)
    x = torch.rand(2, 1, 2, 3, 3, dtype=torch.float64)
    expected = model.double().eval()(x).detach().numpy()
    np.testing.assert_allclose(net.forward(x.numpy()), expected, atol=1e-9)
    assert from_torch(model.eval(), (1, 2, 3, 3)).n_classes == 3  # in eval mode: accepted
    plain = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))  # train mode, but nothing depends on it
    assert from_torch(plain, (1, 1, 2, 2)).n_classes == 2


class _FunctionalDropout(nn.Module):
    def __init__(self, training_arg: bool):
        super().__init__()
        self.fc, self.training_arg = nn.Linear(4, 2), training_arg

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = torch.nn.functional.dropout(x, 0.5, self.training) if self.training_arg else torch.nn.functional.dropout(x, 0.5)
        return self.fc(x)


def test_an_active_functional_dropout_is_refused():
    with pytest.raises(InputError, match="F.dropout .* active"):
        from_torch(_FunctionalDropout(False).eval(), (1, 1, 2, 2))  # F.dropout's default is training=True
    assert from_torch(_FunctionalDropout(True).eval(), (1, 1, 2, 2)).n_classes == 2


@pytest.mark.parametrize("name,error,words", [
    ("empty.onnx", InputError, "empty"), ("garbage.onnx", InputError, "not an ONNX model"),
    ("truncated.onnx", InputError, "ONNX"), ("dir.onnx", InputError, "directory"), ("missing", InputError, "does not exist"),
    ("ext-missing.onnx", InputError, "external data"), ("ext-outside.onnx", InputError, "outside"),
    ("nan.onnx", InputError, "non-finite"), ("model.h5", InputError, "unknown extension"),
    ("list.pt", InputError, "holds a list"), ("module.pt", InputError, "pickled"), ("shapes.pt", InputError, "shape"),
    ("missing.pt", InputError, "missing"), ("truncated.pt", InputError, "not a readable torch file"),
])
def test_model_files_raise_typed_errors_naming_the_file(bad, name, error, words):
    with pytest.raises(error, match=words) as e:
        load_network(bad[name], arch="tiny")
    assert Path(bad[name]).name in str(e.value) and "\n" not in str(e.value)


def test_unsupported_layers_are_input_errors():
    with pytest.raises(UnsupportedLayerError) as e:
        from_torch(nn.Sequential(nn.Linear(2, 3), nn.Flatten()), (1, 2, 2, 2))
    assert isinstance(e.value, InputError)


# ------------------------------------------------------------------------------------------ threat grammar
@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="linfrmesapchkyxtwdul:=,+-/0123456789.e ", max_size=60))
def test_any_threat_string_parses_or_raises_a_threat_error(text):
    try:
        threat = parse_threat(text)
    except ThreatError as e:
        assert "\n" not in str(e)
        return
    threat.spec()


_big = st.one_of(st.integers(-3, 12), st.integers(-10**30, 10**30), st.sampled_from([2**20, 2**20 + 1, 2**63]))
_eps = st.one_of(st.sampled_from(["1/255", "0", "full", "1e400", "-1e400", "1e-400", "nan", "inf", "1/0", "3"]),
                 st.floats(allow_nan=True, allow_infinity=True).map(repr))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["frames", "anyframes", "patch", "anypatch"]), _eps, _big, _big, _big, _big)
def test_absurd_numbers_in_threats_are_refused_quickly(kind, eps, a, b, c, d):
    """Never a traceback, never a huge list: either a threat that fits a 1 x 4 x 10 x 10 input, or a ThreatError."""
    text = {"frames": f"frames:eps={eps},frames={a}-{b}", "anyframes": f"anyframes:eps={eps},k={a}",
            "patch": f"patch:eps={eps},t={a}-{b},y={c},x={d},h=2,w=2",
            "anypatch": f"anypatch:eps={eps},len={a},h={b},w={c},stride={d}"}[kind]
    try:
        parse_threat(text).validate((1, 4, 10, 10))
    except ThreatError as e:
        assert "\n" not in str(e)



_ARGS = st.one_of(st.integers(-3, 6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
                  st.text(max_size=3), st.tuples(st.integers(-1, 5), st.integers(-1, 5)), st.just(np.int64(2)))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["linf", "frames", "anyframes", "patch", "anypatch"]), st.lists(_ARGS, min_size=1, max_size=6))
def test_threat_constructors_check_their_arguments(kind, args):
    """Built from Python (not parsed): any arguments give a threat of checked types and ranges, or a ThreatError."""
    cls = sv.threats.KINDS[kind]
    try:
        threat = cls(*args)
    except ThreatError as e:
        assert "\n" not in str(e)
        return
    except TypeError:  # more positional arguments than the class has fields: a programming error, not bad data
        assert len(args) > len(cls.__dataclass_fields__)
        return
    assert isinstance(threat.eps, float) and threat.eps >= 0
    ints = [v for f in ("k", "len", "h", "w", "stride", "y", "x") if hasattr(threat, f) for v in [getattr(threat, f)]]
    ints += list(getattr(threat, "frames", ())) + list(getattr(threat, "t", ()))
    assert all(type(v) is int and v >= 0 for v in ints), threat
    threat.spec()


@pytest.mark.parametrize("make,words", [
    (lambda: sv.threats.AnyFrames(0.1, 1.5), "k must be >= 1 (an integer), got 1.5"),
    (lambda: sv.threats.AnyFrames(0.1, 0), "k must be >= 1"),
    (lambda: sv.threats.Linf(-0.1), "eps must be a number >= 0"),
    (lambda: sv.threats.Linf(float("nan")), "eps must be a number >= 0"),
    (lambda: sv.threats.Linf("2/255"), "eps must be a number >= 0"),
    (lambda: sv.threats.Frames(0.1, (0, 2.0)), "frames must be >= 0 (an integer), got 2.0"),
    (lambda: sv.threats.Frames(0.1, 3), "frames must be a sequence"),
    (lambda: sv.threats.Patch(0.1, (2, 1), 0, 0, 2, 2), "t=(2, 1) is empty"),
    (lambda: sv.threats.Patch(0.1, (0, 1), 0, 0, 0, 2), "h must be >= 1"),
    (lambda: sv.threats.AnyPatch(0.1, 2, 3, True), "w must be >= 1 (an integer), got True"),
    (lambda: sv.threats.AnyPatch(0.1, 2, 3, 3, stride=0), "stride must be >= 1"),
    (lambda: sv.threats.AnyPatch(0.1, 2, 3, 3, area=(0, 1)), "area must be"),
])
def test_threat_constructor_errors_name_the_argument(make, words):
    with pytest.raises(ThreatError, match=re.escape(words)):
        make()


def test_threat_constructors_normalise_numpy_numbers():
    t = sv.threats.AnyFrames(np.float32(0.5), np.int64(2))
    assert (type(t.eps), type(t.k)) == (float, int) and t == sv.threats.AnyFrames(0.5, 2)
    assert sv.threats.Frames(0.1, [2, 0]).frames == (2, 0)  # a list is stored as a (hashable) tuple


@pytest.mark.parametrize("eps,text", [(1e308, "1e+308"), (1e16, "1e+16"), (2 / 255, "2/255"), (255.0, "65025/255")])
def test_a_huge_eps_is_written_as_a_decimal(eps, text):
    """eps * 255 overflowed to inf for eps near the float maximum (round() raised OverflowError)."""
    threat = sv.threats.Linf(eps)
    assert threat.spec() == f"linf:eps={text}" and sv.parse_threat(threat.spec()).eps == pytest.approx(eps)
