"""VNN-COMP plain-text files: round trips and clear errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from stverify.errors import InputError
from stverify.interchange import vnncomp as vc

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.integers(1, 40), elements=finite), arrays(np.float64, st.integers(1, 12), elements=finite))
def test_witness_round_trip_is_exact(x, y):
    result, w = "sat", vc.Witness(x, y)
    text = vc.format_result(result, w)
    back = vc.parse_witness(text.partition("\n")[2])
    np.testing.assert_array_equal(back.x, x)  # repr() of a float64 reads back exactly
    np.testing.assert_array_equal(back.y, y)


@pytest.mark.parametrize("result", ["unsat", "timeout", "unknown", "error"])
def test_result_file_without_witness(tmp_path, result):
    p = tmp_path / "out.txt"
    vc.write_result(p, result)
    assert vc.read_result(p) == (result, None)


def test_result_file_sat_and_2021_aliases(tmp_path):
    p = tmp_path / "out.txt"
    vc.write_result(p, "sat", vc.Witness(np.array([0.25, 0.5]), np.array([1.0, -2.0])))
    result, w = vc.read_result(p)
    assert result == "sat" and w.x.tolist() == [0.25, 0.5] and w.y.tolist() == [1.0, -2.0]
    p.write_text("holds\n")
    assert vc.read_result(p) == ("unsat", None)
    p.write_text("violated\n((X_0 1e-3)\n (Y_0 2))\n")
    r, w = vc.read_result(p)
    assert r == "sat" and w.x.tolist() == [1e-3]


@pytest.mark.parametrize("text, match", [
    ("maybe\n", "result expects one of"),
    ("sat\n((X_0 1) (X_2 3) (Y_0 0))", "missing X_1"),
    ("sat\n((X_0 1) (X_0 3) (Y_0 0))", "X_0 given twice"),
    ("sat\n((X_0 abc) (Y_0 0))", "X_0 expects a number"),
    ("sat\n((Y_0 0))", "no \\(X_i value\\) pairs"),
])
def test_bad_result_files_name_the_problem(tmp_path, text, match):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        vc.read_result(p)


def test_instances_round_trip_relative_paths(tmp_path):
    insts = [vc.Instance(tmp_path / "onnx" / "net.onnx", tmp_path / "vnnlib" / f"p{i}.vnnlib", 30.0 + i) for i in range(3)]
    vc.write_instances(tmp_path / "instances.csv", insts)
    assert (tmp_path / "instances.csv").read_text().splitlines()[0] == "onnx/net.onnx,vnnlib/p0.vnnlib,30"
    back = vc.read_instances(tmp_path / "instances.csv")
    assert [(b.onnx.resolve(), b.vnnlib.resolve(), b.timeout) for b in back] == \
           [(i.onnx.resolve(), i.vnnlib.resolve(), i.timeout) for i in insts]


@pytest.mark.parametrize("row, match", [("a.onnx,b.vnnlib", "expected 3 columns"), ("a.onnx,b.vnnlib,-1", "timeout must be > 0"),
                                        ("a.onnx,b.vnnlib,soon", "timeout expects a number")])
def test_bad_instances_rows(tmp_path, row, match):
    p = tmp_path / "instances.csv"
    p.write_text(row + "\n")
    with pytest.raises(InputError, match=match):
        vc.read_instances(p)


def test_results_csv_round_trip_with_header_and_witness(tmp_path):
    rows = [vc.ResultRow("b", "n.onnx", "p0.vnnlib", 0.1, "unsat", 2.5),
            vc.ResultRow("b", "n.onnx", "p1.vnnlib", 0.1, "sat", 1.0, tmp_path / "p1.counterexample")]
    vc.write_results_csv(tmp_path / "tool.csv", rows)
    assert vc.read_results_csv(tmp_path / "tool.csv") == rows
    text = "benchmark,onnx,vnnlib,prepare_time,result,run_time\n" + (tmp_path / "tool.csv").read_text()
    (tmp_path / "tool.csv").write_text(text)
    assert vc.read_results_csv(tmp_path / "tool.csv") == rows
    (tmp_path / "tool.csv").write_text("b,n.onnx,p.vnnlib,0,holds\n")
    with pytest.raises(InputError, match="tool.csv:1: expected 6 or 7 columns"):
        vc.read_results_csv(tmp_path / "tool.csv")


def test_manifest_round_trip_and_matching(tmp_path):
    from stverify.interchange.manifest import ExportedInstance, match, read_manifest, write_manifest

    insts = [ExportedInstance("onnx/tiny.onnx", f"vnnlib/tiny_{i}.vnnlib", 60.0, "tiny", None, None, "data.npz", "test", i, 1,
                              "anyframes:eps=8/255,k=1") for i in range(3)]
    write_manifest(tmp_path, insts)
    assert read_manifest(tmp_path) == insts
    got = match(["./benchmarks/stverify/vnnlib/tiny_1.vnnlib", "vnnlib/tiny_2.vnnlib", "other/x.vnnlib"], insts)
    assert got == {"./benchmarks/stverify/vnnlib/tiny_1.vnnlib": insts[1], "vnnlib/tiny_2.vnnlib": insts[2]}
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(InputError, match="not a stverify export manifest"):
        read_manifest(tmp_path)
