"""ONNX export and its Conv2d / Gemm rewrites (exact in float64, onnxruntime to 1e-5), and the
VNN-COMP folder that ``stverify export`` writes (instances.csv rows resolve, the manifest round-trips)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from onnx.reference import ReferenceEvaluator

from conftest import tiny_network
from stverify import zoo
from stverify.cli import main as cli_main
from stverify.data import ensure_dataset, load_npz
from stverify.errors import InputError
from stverify.interchange import export as ex
from stverify.interchange import vnncomp
from stverify.interchange.manifest import match, read_manifest
from stverify.interchange.onnx_writer import float32_rounding, input_shape, network_to_onnx, run_onnx
from stverify.interchange.rewrite import rewrite, rewrite_gemm
from stverify.interchange.vnnlib import load_vnnlib
from stverify.network import AvgPool3d, Conv3d, Flatten, Linear, MaxPool3d, Network, ReLU, from_onnx
from stverify.threats import parse_threat


def evaluate64(model, xs: np.ndarray) -> np.ndarray:
    """A float64 ONNX model on inputs xs, with the ONNX reference evaluator (numpy, float64)."""
    ev = ReferenceEvaluator(model)
    return np.stack([ev.run(None, {"input": x.reshape(input_shape(model))})[0][0] for x in xs])


def check_rewrites(net: Network, xs: np.ndarray, kinds=("conv2d", "gemm")) -> dict:
    """Every rewrite: exact in float64 (1e-9), and onnxruntime within 1e-5 of the Conv3d model's
    onnxruntime outputs; the max abs diffs."""
    ref = net.forward(xs)
    np.testing.assert_allclose(evaluate64(network_to_onnx(net, np.float64), xs), ref, rtol=0, atol=1e-9)
    original = run_onnx(network_to_onnx(net), xs)
    diffs = {}
    for kind in kinds:
        np.testing.assert_allclose(evaluate64(rewrite(net, kind, np.float64), xs), ref, rtol=0, atol=1e-9)
        diffs[kind] = float(np.max(np.abs(run_onnx(rewrite(net, kind), xs) - original)))
        assert diffs[kind] <= 1e-5, (kind, diffs[kind])
    return diffs


def zoo_inputs(name: str, n: int = 6) -> np.ndarray:
    """Test inputs of the model's dataset and points of a threat set around them."""
    X, _ = load_npz(ensure_dataset(zoo.ARCHITECTURES[name].dataset), "test")
    threat = parse_threat("linf:eps=16/255")
    rng = np.random.default_rng(0)
    return np.concatenate([X[:n]] + [threat.sample(x, 2, rng) for x in X[:n]])


@pytest.mark.parametrize("name,kinds", [("tiny", ("conv2d", "gemm")), ("tiny_maxpool", ("conv2d",)),
                                        ("small", ("conv2d", "gemm")), ("medmnist", ("conv2d",))])
def test_zoo_rewrites_match(name, kinds):
    net = zoo.pretrained_network(name)
    check_rewrites(net, zoo_inputs(name), kinds)


def test_export_loads_back_to_the_same_network():
    """The export loads back as the same graph with the float32 weights it wrote: the weights themselves
    for the chains (trained in float32), rounded ones where a batch norm was folded in float64."""
    for name in zoo.ARCHITECTURES:
        net = zoo.pretrained_network(name)
        back = from_onnx(network_to_onnx(net))
        folded = name in ("resnet2b", "inception", "medmnist_resnet", "r3d18_small")
        assert (float32_rounding(net) == 0.0) != folded
        assert [layer.describe() for layer in back.layers] == [layer.describe() for layer in net.layers]
        assert back.sources == net.sources
        for a, b in zip(net.layers, back.layers):
            for attr in ("weight", "bias", "scale", "shift"):
                if hasattr(a, attr):
                    np.testing.assert_array_equal(getattr(a, attr).astype(np.float32), getattr(b, attr))


@st.composite
def networks(draw):
    """Random small 3D CNNs: Conv3d with strides and padding, then an average or max pool or a second conv."""
    c, t, h, w = draw(st.integers(1, 2)), draw(st.integers(2, 5)), draw(st.integers(3, 7)), draw(st.integers(3, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    layers, shape = [], (c, t, h, w)

    def add(layer):
        nonlocal shape
        layers.append(layer)
        shape = layer.output_shape(shape)

    def conv(out_channels: int, max_kernel: int, padded: bool) -> Conv3d:
        k = tuple(draw(st.integers(1, min(max_kernel, n))) for n in shape[1:])
        pad = tuple(draw(st.integers(0, kk // 2)) if padded else 0 for kk in k)
        return Conv3d(rng.normal(size=(out_channels, shape[0], *k)) / 2, rng.normal(size=out_channels) * 0.3,
                      stride=tuple(draw(st.integers(1, 2)) for _ in k), padding=pad)

    add(conv(draw(st.integers(1, 3)), 3, True))
    add(ReLU())
    tail = draw(st.sampled_from(["avg", "max", "conv", None]))
    if tail == "avg":
        add(AvgPool3d(tuple(draw(st.integers(1, n)) for n in shape[1:]), tuple(draw(st.integers(1, 2)) for _ in range(3))))
    elif tail == "max":  # kernel depth 1: the form the conv2d rewrite supports
        add(MaxPool3d((1,) + tuple(draw(st.integers(1, n)) for n in shape[2:]), tuple(draw(st.integers(1, 2)) for _ in range(3))))
    elif tail == "conv":
        add(conv(2, 5, False))
        add(ReLU())
    add(Flatten())
    add(Linear(rng.normal(size=(3, shape[0])) / np.sqrt(shape[0]), rng.normal(size=3) * 0.3))
    return Network(layers, (c, t, h, w), name="random"), rng.uniform(0, 1, size=(4, c, t, h, w))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_random_rewrites_are_exact(case):
    net, xs = case
    has_max = any(isinstance(layer, MaxPool3d) for layer in net.layers)
    check_rewrites(net, xs, ("conv2d",) if has_max else ("conv2d", "gemm"))
    back = from_onnx(network_to_onnx(net))  # float64 weights are written as float32
    for a, b in zip(net.layers, back.layers):
        if a.affine:
            np.testing.assert_array_equal(b.weight, a.weight.astype(np.float32))
    assert float32_rounding(net) > 0


@pytest.mark.parametrize("pool", [AvgPool3d((2, 2, 2), (1, 2, 1)), AvgPool3d((3, 1, 2), (2, 1, 1)),
                                  MaxPool3d((1, 2, 2), (2, 1, 2)), MaxPool3d((1, 3, 2), (1, 2, 1))], ids=str)
def test_pools_over_frames(pool):
    """Pools with temporal kernels and frame strides after a temporally padded, strided Conv3d."""
    rng = np.random.default_rng(1)
    conv = Conv3d(rng.normal(size=(2, 2, 3, 2, 3)), rng.normal(size=2), stride=(2, 1, 1), padding=(1, 0, 1))
    shape = pool.output_shape(conv.output_shape((2, 7, 5, 6)))
    net = Network([conv, ReLU(), pool, Flatten(), Linear(rng.normal(size=(3, int(np.prod(shape)))), None)], (2, 7, 5, 6))
    kinds = ("conv2d",) if isinstance(pool, MaxPool3d) else ("conv2d", "gemm")
    check_rewrites(net, rng.uniform(0, 1, size=(5, 2, 7, 5, 6)), kinds)


def test_rewrite_refusals():
    net = Network([Conv3d(np.ones((1, 1, 1, 2, 2)), None), ReLU(), MaxPool3d((2, 2, 2)), Flatten(),
                   Linear(np.ones((2, 8)), None)], (1, 4, 5, 5))
    with pytest.raises(InputError, match=r"--rewrite conv2d: layer 2 MaxPool3d.*max over several frames"):
        rewrite(net, "conv2d")
    with pytest.raises(InputError, match=r"--rewrite gemm: layer 2 MaxPool3d.*not linear"):
        rewrite(net, "gemm")
    with pytest.raises(InputError, match=r"layer 0 Conv3d.*10976 x 21952 = 240,945,152 entries, above the limit"):
        rewrite(zoo.pretrained_network("medmnist"), "gemm")
    with pytest.raises(InputError, match=r"above the limit of 100"):
        rewrite_gemm(zoo.pretrained_network("tiny"), max_entries=100)


@pytest.fixture
def stub_vnnlib(monkeypatch):
    """The export's plumbing without VNN-LIB text: a file naming the threat and label, and the calls
    (the round trip through ``load_vnnlib`` below uses the real writer)."""
    calls = []

    def write(path, threat, x0, output, domain):
        label = output.robustness_label()  # the instances here state labels
        calls.append((threat, label))
        path.write_text(f"; {threat.spec()} label {label}\n")

    monkeypatch.setattr(ex, "write_vnnlib", write)
    return calls


def test_export_writes_a_vnncomp_folder(tmp_path, stub_vnnlib, capsys):
    out = tmp_path / "bench"
    argv = ["export", "--model", "tiny", "--index", "0", "3", "--threat", "anyframes:k=1,eps=8/255",
            "--threat", "linf:eps=2/255", "--threat", "anypatch:eps=8/255,len=2,h=3,w=3", "--out", str(out),
            "--timeout", "30", "--split-members", "--rewrite", "conv2d"]
    assert cli_main(argv) == 0
    err = capsys.readouterr().err
    assert "tiny.conv2d.onnx: conv2d rewrite" in err and "max abs diff" in err
    rows = vnncomp.read_instances(out / "instances.csv")
    manifest = read_manifest(out)
    assert len(rows) == len(manifest) == 2 * (4 + 1 + 3 * 8 * 8) == len(stub_vnnlib)
    for row, e in zip(rows, manifest):
        assert row.onnx.is_file() and row.vnnlib.is_file() and row.timeout == 30.0
        assert row.onnx == out / e.onnx == out / "onnx" / "tiny.conv2d.onnx" and row.vnnlib == out / e.vnnlib
    assert read_manifest(out / "manifest.json") == manifest
    found = match([f"./benchmarks/stverify/{e.vnnlib}" for e in manifest], manifest)
    assert [found[f"./benchmarks/stverify/{e.vnnlib}"] for e in manifest] == manifest
    # the member files of a union state exactly its member boxes
    net = zoo.pretrained_network("tiny")
    X, Y = load_npz(ensure_dataset("video"), "test")
    for union in ("anyframes:eps=8/255,k=1", "anypatch:eps=8/255,len=2,h=3,w=3"):
        members = [e for e in manifest if e.index == 3 and e.member == union]
        assert {e.label for e in members} == {int(Y[3])}
        boxes = [b for e in members for b in parse_threat(e.threat).member_boxes(X[3])]
        expected = list(parse_threat(union).member_boxes(X[3]))
        assert len(boxes) == len(expected) and all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
                                                   for a, b in zip(boxes, expected))
    [linf] = [e for e in manifest if e.index == 0 and e.threat.startswith("linf")]
    assert linf.member is None and linf.model == "tiny" and linf.data == "video" and linf.split == "test"
    back = from_onnx(out / "onnx" / "tiny.onnx")  # the Conv3d model is written too
    np.testing.assert_array_equal(back.forward(X[:4]), net.forward(X[:4]))
    assert run_onnx(onnx.load(out / "onnx" / "tiny.conv2d.onnx"), X[:2]).shape == (2, 4)


def test_export_from_a_bench_config(tmp_path, stub_vnnlib):
    config = tmp_path / "bench.toml"
    config.write_text('timeout = 12\n[[models]]\nname = "tiny_std"\n[samples]\nn = 2\n[[threats]]\nkind = "anyframes"\n'
                      'eps = ["8/255", "16/255"]\n[[methods]]\nname = "stbp"\nmethod = "stbp"\n[[methods]]\nname = "milp"\n'
                      'method = "milp"\n')
    assert cli_main(["export", str(config), "--out", str(tmp_path / "out")]) == 0
    from stverify.bench import expand, load_config

    tasks, _ = expand(load_config(config))
    keys = {(t.model, t.split, t.index, t.threat, t.label) for t in tasks}
    manifest = read_manifest(tmp_path / "out")
    assert {(e.model, e.split, e.index, e.threat, e.label) for e in manifest} == keys and len(manifest) == 4
    assert {e.timeout for e in manifest} == {12.0} and {e.onnx for e in manifest} == {"onnx/tiny_std.onnx"}


def test_export_user_errors(tmp_path, stub_vnnlib, capsys):
    out = str(tmp_path / "out")
    for argv, words in [(["export", "--out", out], "give a bench CONFIG.toml, or --model and --threat"),
                        (["export", "--model", "nope", "--threat", "linf:eps=1/255", "--out", out], "neither a zoo model"),
                        (["export", "--model", "tiny", "--threat", "anyframes:k=9,eps=1/255", "--out", out],
                         "k must be in 1..T=4"),
                        (["export", "--model", "small", "--threat", "anypatch:eps=1/255,len=2,h=4,w=4", "--split-members",
                          "--out", out], "1183 member boxes"),
                        (["export", "--model", "tiny_maxpool", "--threat", "linf:eps=1/255", "--rewrite", "gemm", "--out", out],
                         "not linear")]:
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not stub_vnnlib


def test_export_checks_what_it_writes(tmp_path, stub_vnnlib, monkeypatch):
    """float64 weights are reported as rounded; a rewrite that differs from the model is never written."""
    net = tiny_network(2)  # random float64 weights
    x = np.random.default_rng(0).uniform(0, 1, size=net.input_shape)
    item = ex.Item("rand", None, None, "none.npz", "test", 0, int(net.predict(x)), "anyframes:eps=2/255,k=1", x)
    lines = []
    ex.export([item], {"rand": net}, tmp_path / "a", 10, rewrite="gemm", log=lines.append)
    assert "weights rounded to float32 (largest change" in lines[0] and "gemm rewrite" in lines[1]
    wrong = Network(net.layers[:-1] + (Linear(net.layers[-1].weight * 1.001, net.layers[-1].bias),), net.input_shape)
    monkeypatch.setattr(ex, "rewrite_network", lambda _, kind: rewrite(wrong, kind))
    with pytest.raises(RuntimeError, match="rewrite of rand differs"):
        ex.export([item], {"rand": net}, tmp_path / "b", 10, rewrite="conv2d", log=lines.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # nothing of b, not even its Conv3d model


@pytest.mark.usefixtures("torch_one_thread")
@pytest.mark.parametrize("split_members", [False, True], ids=["union", "members"])
def test_exported_vnnlib_reads_back_to_the_same_set_and_verdict(tmp_path, split_members):
    """Export, then ``load_vnnlib`` on the written ONNX and VNN-LIB: the member boxes are the threat's
    exactly (points of the set in, points just outside out), and the MILP gives the threat's verdict
    (and, on one disjunctive file, its optimal margin)."""
    from stverify import load_sample, verify
    from stverify.data import data_path

    items, nets = ex.items_from_args(ex.model_spec("tiny_std"), "test", [0, 1],
                                     ["anyframes:k=1,eps=32/255", "anypatch:eps=48/255,len=3,h=8,w=8", "linf:eps=8/255"])
    ex.export(items, nets, tmp_path, 30, split_members=split_members, log=lambda _: None)
    net, rng = from_onnx(tmp_path / "onnx" / "tiny_std.onnx"), np.random.default_rng(0)
    results: dict = {}  # (index, stverify threat) -> the MILP's results on its files
    for e in read_manifest(tmp_path):
        prop = load_vnnlib(tmp_path / e.vnnlib, net)
        x0, label = load_sample(data_path(e.data), e.split, e.index)
        threat = parse_threat(e.threat)
        boxes = sorted((lo.tobytes(), hi.tobytes()) for lo, hi in threat.member_boxes(x0))
        assert sorted((lo.tobytes(), hi.tobytes()) for lo, hi in zip(prop.spec.lo, prop.spec.hi)) == boxes
        assert all(prop.threat.contains(prop.x0, p, tol=0.0) for p in threat.sample(x0, 20, rng))
        lo, hi = threat.interval(x0)
        free = np.argwhere(np.broadcast_to(threat.perturbable(x0.shape)[None], x0.shape))
        for p in threat.sample(x0, 5, rng):  # one perturbable voxel pushed just past its interval
            v = tuple(free[rng.integers(len(free))])
            p[v] = hi[v] + 1e-6 if hi[v] < 1 else lo[v] - 1e-6
            assert not threat.contains(x0, p, tol=0.0) and not prop.threat.contains(prop.x0, p, tol=0.0)
        res = prop.verify(method="milp", timeout=60, optimal=not split_members)
        assert res.status in ("verified", "falsified") and prop.label == label
        if res.status == "falsified":
            assert prop.check_witness(res.counterexample).ok
        results.setdefault((e.index, e.member or e.threat), []).append(res)
    statuses = set()
    for (index, union), rs in results.items():
        x0, label = load_sample(data_path(items[0].data), "test", index)
        ref = verify(net, x0, label, parse_threat(union), method="milp", timeout=60, optimal=not split_members)
        assert ("falsified" if any(r.status == "falsified" for r in rs) else "verified") == ref.status
        if ref.status == "verified" and not split_members:  # the optimum over the same set
            assert abs(rs[0].margin_lb - ref.margin_lb) <= 1e-5 * (1 + abs(ref.margin_lb))
        statuses.add(ref.status)
    assert statuses == {"verified", "falsified"}


# --- rewrites used through the manifest, atomic export, the tools note ----------------------------------------------
@pytest.fixture(scope="module")
def rewritten(tmp_path_factory):
    """Exports of tiny_std with --rewrite conv2d and gemm (two inputs, a union and a box threat)."""
    tmp = tmp_path_factory.mktemp("rewritten")
    items, nets = ex.items_from_args(ex.model_spec("tiny_std"), "test", [0, 1],
                                     ["anyframes:k=1,eps=32/255", "linf:eps=8/255"])
    for kind in ("conv2d", "gemm"):
        ex.export(items, nets, tmp / kind, 30, rewrite=kind, log=lambda _: None)
    return tmp


@pytest.mark.usefixtures("torch_one_thread")
@pytest.mark.parametrize("kind", ["conv2d", "gemm"])
def test_verify_vnnlib_runs_a_rewrite_on_its_native_model(rewritten, kind, tmp_path, capsys):
    from stverify.interchange.manifest import native_model, read_rewrites

    folder = rewritten / kind
    (r,) = read_rewrites(folder)
    assert (r.onnx, r.kind, r.native) == (f"onnx/tiny_std.{kind}.onnx", kind, "onnx/tiny_std.onnx")
    assert native_model(folder / r.onnx) == folder / r.native and native_model(folder / r.native) is None
    answers = set()
    for inst in vnncomp.read_instances(folder / "instances.csv"):  # names the rewrite only
        assert inst.onnx == folder / r.onnx
        argv = ["verify", "--model", str(inst.onnx), "--vnnlib", str(inst.vnnlib), "--method", "milp", "--timeout", "60"]
        assert cli_main(argv + ["--json", "--counterexample", "--out", str(tmp_path / "result.txt")]) == 0
        out, err = capsys.readouterr()
        (line,) = out.splitlines()  # one JSON object on stdout, the result file to --out
        doc = __import__("json").loads(line)
        result, witness = vnncomp.read_result(tmp_path / "result.txt")
        assert doc["vnncomp"]["result"] == result and "verifying tiny_std.onnx" in err
        assert doc["instance"]["native_model"] == str(folder / r.native)
        native = load_vnnlib(inst.vnnlib, folder / r.native)  # the same question asked of the native model
        expected = vnncomp.STATUS_TO_RESULT[native.verify(method="milp", timeout=60).status]
        assert result == expected
        if result == "sat":  # the witness, in ONNX order, is unsafe on the rewrite itself (onnxruntime)
            assert native.check_witness(witness.x).ok
            np.testing.assert_array_equal(np.ravel(doc["counterexample"]), witness.x)
            y = run_onnx(onnx.load(inst.onnx), witness.x.reshape((1,) + native.network.input_shape))[0]
            assert native.spec.output.unsafe(y)
        answers.add(result)
    assert answers == {"sat", "unsat"}


def test_a_changed_rewrite_is_not_replaced_by_its_native_model(rewritten, tmp_path, capsys):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(rewritten / "conv2d", folder)
    inst = vnncomp.read_instances(folder / "instances.csv")[0]
    model = onnx.load(inst.onnx)
    model.graph.initializer[0].raw_data = bytes(len(model.graph.initializer[0].raw_data))  # zero the first weights
    onnx.save(model, inst.onnx)
    assert cli_main(["verify", "--model", str(inst.onnx), "--vnnlib", str(inst.vnnlib)]) == 2
    err = capsys.readouterr().err
    assert "changed since the export" in err and len(err.strip().splitlines()) == 1


@pytest.mark.usefixtures("torch_one_thread")
def test_run_instances_runs_a_rewritten_export(rewritten, tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[1] / "experiments" / "interchange" / "run_instances.py"
    spec = importlib.util.spec_from_file_location("run_instances", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(rewritten / "gemm"), "--out", str(tmp_path / "r.csv"), "--method", "milp"]) == 0
    rows = vnncomp.read_results_csv(tmp_path / "r.csv")
    assert len(rows) == 4 and {r.onnx for r in rows} == {"onnx/tiny_std.gemm.onnx"}
    assert {r.result for r in rows} <= {"sat", "unsat"}


def test_audit_bounds_on_the_nodes_of_a_rewrite(rewritten, tmp_path):
    """A bounds file naming the conv2d rewrite's ONNX nodes resolves to the same layer inputs as the native model's."""
    from stverify.audit.claims import onnx_layer_map

    net = zoo.pretrained_network("tiny_std")
    native = onnx_layer_map(rewritten / "conv2d" / "onnx" / "tiny_std.onnx", net)
    for kind in ("conv2d", "gemm"):
        mapped = onnx_layer_map(rewritten / kind / "onnx" / f"tiny_std.{kind}.onnx", net)
        assert mapped["layer0_Conv" if kind == "conv2d" else "layer0_Gemm"] == native["layer0_Conv"] == [1]
        assert mapped["output"] == native["output"] == [len(net.layers)]
    with pytest.raises(InputError, match="not this model"):
        onnx_layer_map(rewritten / "conv2d" / "onnx" / "tiny_std.conv2d.onnx", tiny_network(0))


def test_export_is_all_or_nothing(tmp_path, capsys):
    """Over the size limit of one disjunctive file (after the ONNX model and a first VNN-LIB file are written), or
    into a used folder: nothing is left behind, nothing is touched."""
    argv = ["export", "--model", "small", "--threat", "linf:eps=1/255", "--threat", "anypatch:eps=1/255,len=2,h=4,w=4"]
    assert cli_main(argv + ["--out", str(tmp_path / "new" / "out")]) == 2
    assert "over the limit of 1,000,000" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no out, no parent, no partial folder
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mine.txt").write_text("keep")
    assert cli_main(argv[:5] + ["--out", str(tmp_path / "used")]) == 2
    assert "already exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["mine.txt"]
    (tmp_path / "empty").mkdir()
    assert cli_main(argv[:5] + ["--out", str(tmp_path / "empty")]) == 0  # an empty folder is taken
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["README.md", "instances.csv", "manifest.json",
                                                                      "onnx", "vnnlib"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "used"]


def test_the_tools_note_is_where_users_choose(rewritten, capsys):
    from stverify.interchange.manifest import TOOLS_NOTE

    assert "Marabou" in TOOLS_NOTE and "--split-members" in TOOLS_NOTE and "alpha-beta-CROWN" in TOOLS_NOTE
    readme = (rewritten / "conv2d" / "README.md").read_text()
    assert TOOLS_NOTE in readme and "1 disjunctive file(s)" not in readme and "2 disjunctive file(s)" in readme
    assert "`onnx/tiny_std.conv2d.onnx`: the conv2d rewrite of `onnx/tiny_std.onnx`" in readme
    doc = __import__("json").loads((rewritten / "conv2d" / "manifest.json").read_text())
    assert doc["notes"] == [TOOLS_NOTE]
    assert cli_main(["export", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Marabou" in text and "--split-members" in text
