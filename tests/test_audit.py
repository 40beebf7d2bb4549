"""stverify audit: planted unsound bounds and wrong verdicts are flagged, honest claims pass."""
import json
import shutil

import numpy as np
import pytest
import torch

from stverify.audit import audit
from stverify.audit.claims import Key, bounds_claims, onnx_layer_map, read_bounds_file, write_bounds_file
from stverify.audit.report import compare_bounds
from stverify.data import data_path
from stverify.cli import main
from stverify.data import load_sample
from stverify.errors import InputError
from stverify.interchange import vnncomp as vc
from stverify.interchange.manifest import ExportedInstance, write_manifest
from stverify.zoo import load_pretrained, pretrained_network

from conftest import boundary_point

CONFIG = """
timeout = 30
[[models]]
name = "tiny"
[samples]
n = 2
[[threats]]
kind = "anyframes"
eps = ["32/255"]
[[methods]]
name = "stbp-crown"
method = "stbp"
[audit]
layers = [4, 6]
neurons = 4
bounds_timeout = 60
"""


@pytest.fixture(scope="module")
def exact_run(tmp_path_factory):
    """One audit of tiny (two inputs, one robust and one not, under anyframes 32/255): its directory and records."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("audit")
    (root / "audit.toml").write_text(CONFIG)
    found = audit(root / "audit.toml", root / "out")
    records = [json.loads(line) for line in (root / "out" / "results.jsonl").read_text().splitlines()]
    return root, records, found


def _copy(exact_run, tmp_path):
    root, records, _ = exact_run
    shutil.copytree(root / "out", tmp_path / "out")
    return tmp_path / "out", records


def _key(r):
    return {k: r[k] for k in ("model", "split", "index", "threat")}


def _by_status(records):
    return {r["verdict"]["status"]: r for r in records}


def _exact_claims(records, plant=None):
    """A bounds file's entries that claim the exact bounds (sound) on every audited neuron, and the
    certified STBP bounds elsewhere; ``plant`` = (record, layer, k): that neuron's lower bound is
    moved inward, to its exact minimum + 1e-3."""
    net = pretrained_network("tiny")
    entries = []
    for r in records:
        layers = {}
        for i in (4, 6):
            size = int(np.prod(net.shapes[i]))
            lo, hi = np.full(size, -1e6), np.full(size, 1e6)
            ex = r["exact_bounds"][str(i)]
            lo[ex["neurons"]], hi[ex["neurons"]] = ex["lo"], ex["hi"]
            if plant is not None and plant[0] is r and plant[1] == i:
                lo[ex["neurons"][plant[2]]] = ex["lo_attained"][plant[2]] + 1e-3
            layers[i] = (lo, hi)
        entries.append({**_key(r), "layers": layers})
    return entries


def _vnncomp(folder, out, records, wrong: bool):
    """A manifest of the two instances and a results CSV: honest (unsat on the robust one, sat with the
    exact counterexample on the other) or wrong (unsat on the non-robust one, sat with x0 as witness)."""
    net = pretrained_network("tiny")
    robust, broken = _by_status(records)["verified"], _by_status(records)["falsified"]
    insts = [ExportedInstance("onnx/tiny.onnx", f"vnnlib/tiny_{r['index']}.vnnlib", 30.0, "tiny", None, None, r["data"],
                              r["split"], r["index"], r["label"], r["threat"]) for r in records]
    write_manifest(folder, insts)
    cex = np.load(out / broken["counterexample"])
    x0 = load_sample(data_path(robust["data"]), robust["split"], robust["index"])[0]
    witness_x = x0 if wrong else cex
    vc.write_result(folder / "sat.txt", "sat", vc.Witness(witness_x.ravel(), net.forward(witness_x)))
    rows = [vc.ResultRow("stverify", "onnx/tiny.onnx", f"./benchmarks/tiny/vnnlib/tiny_{r['index']}.vnnlib", 0.1,
                         ("unsat" if r is broken else "sat") if wrong else ("sat" if r is broken else "unsat"), 1.5,
                         folder / "sat.txt" if (r is broken) != wrong else None) for r in (robust, broken)]
    vc.write_results_csv(folder / "results.csv", rows)
    return folder / "results.csv"


def test_exact_answers_and_own_claims_are_sound(exact_run):
    _, records, found = exact_run
    assert sorted(r["verdict"]["status"] for r in records) == ["falsified", "verified"]
    assert found["unsound"] == []
    for r in records:
        for i in ("4", "6"):
            ex = r["exact_bounds"][i]
            assert len(ex["neurons"]) == 4 and set(ex["status"]) == {"exact"}
            c = r["claims"]["stbp-crown"]["bounds"][i]
            assert np.all(np.asarray(c["lo"]) <= np.asarray(ex["lo_attained"]))  # STBP is sound
            assert np.all(np.asarray(c["hi"]) >= np.asarray(ex["hi_attained"]))
    conf = {(c["source"], c["claimed"]): c for c in found["confusion"]}
    assert conf[("stbp-crown", "unknown")]["falsified"] == 1


def test_honest_claims_pass(exact_run, tmp_path):
    out, records = _copy(exact_run, tmp_path)
    write_bounds_file(tmp_path / "honest.json", _exact_claims(records))
    results = _vnncomp(tmp_path, out, records, wrong=False)
    found = audit(exact_run[0] / "audit.toml", out, bounds_files={"honest": tmp_path / "honest.json"},
                  results={"tool": results}, manifest=tmp_path, resume=True)
    assert found["unsound"] == []
    tight = {(t["layer"], t["source"]): t for t in found["tightness"]}
    assert tight[(4, "honest")]["tight"] == 1.0 and tight[(4, "honest")]["neurons"] == 8
    conf = {(c["source"], c["claimed"]): c for c in found["confusion"]}
    assert conf[("tool", "verified")]["verified"] == 1 and conf[("tool", "falsified")]["falsified"] == 1


def test_planted_unsound_bound_and_wrong_verdicts_are_flagged(exact_run, tmp_path):
    out, records = _copy(exact_run, tmp_path)
    victim = records[0]
    write_bounds_file(tmp_path / "planted.npz", _exact_claims(records, plant=(victim, 4, 2)))
    results = _vnncomp(tmp_path, out, records, wrong=True)
    found = audit(exact_run[0] / "audit.toml", out, bounds_files={"tool": tmp_path / "planted.npz"},
                  results={"tool": results}, manifest=tmp_path, resume=True)  # one tool: bounds and verdicts
    bad = found["unsound"]
    bounds = [u for u in bad if u["what"] != "verdict"]
    assert [(u["source"], u["index"], u["layer"], u["neuron"], u["what"]) for u in bounds] == \
        [("tool", victim["index"], 4, victim["exact_bounds"]["4"]["neurons"][2], "lower bound")]
    assert bounds[0]["excess"] == pytest.approx(1e-3, rel=1e-6)
    why = {u["index"]: u["why"] for u in bad if u["what"] == "verdict"}
    by = _by_status(records)
    assert len(why) == 2
    assert why[by["falsified"]["index"]].startswith("claims verified (unsat); milp found a counterexample")
    assert why[by["verified"]["index"]].startswith("claims falsified (sat); the witness: not misclassified on replay")


def test_a_boundary_witness_is_noted_not_unsound_unless_the_exact_answer_rules_it_out(exact_run, tmp_path, capsys):
    """The honest tool's sat witness moved onto the decision boundary (float64 margin just above 0): a note and
    ``witness = boundary`` in verdicts.csv, exit 0.  With the exact record edited to a proof of margin >= 5 on that
    instance, the same witness contradicts it: unsound, exit 1."""
    from stverify.threats import parse_threat

    out, records = _copy(exact_run, tmp_path)
    results = _vnncomp(tmp_path, out, records, wrong=False)
    broken = _by_status(records)["falsified"]
    net = pretrained_network("tiny")
    x0 = load_sample(data_path(broken["data"]), broken["split"], broken["index"])[0]
    point = boundary_point(net, x0, broken["label"], parse_threat(broken["threat"]), np.load(out / broken["counterexample"]))
    vc.write_result(tmp_path / "sat.txt", "sat", vc.Witness(point.ravel(), net.forward(point)))
    args = ["audit", str(exact_run[0] / "audit.toml"), "--out", str(out), "--results", f"tool={results}", "--manifest",
            str(tmp_path), "--resume"]
    assert main(args) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "sat with a boundary witness (float64 margin" in err and "not counted as unsound" in err
    assert "unsound claims: 0" in err
    with open(out / "verdicts.csv") as f:
        rows = {(r["source"], r["index"]): r for r in __import__("csv").DictReader(f)}
    assert rows[("tool", str(broken["index"]))]["witness"] == "boundary"
    assert rows[("tool", str(broken["index"]))]["unsound"] == "False"
    lines = (out / "results.jsonl").read_text().splitlines()  # the exact answer edited: "verified, margin >= 5"
    edited = [json.loads(line) for line in lines]
    for r in edited:
        if r["index"] == broken["index"]:
            r["verdict"].update(status="verified", margin_lb=5.0, margin_ub=None)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in edited))
    assert main(args) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "claims falsified (sat) with a boundary witness" in err and "proved every margin >= 5" in err


@pytest.mark.parametrize("bad", ["results", "bounds"])
def test_bad_claim_files_are_refused_before_the_audit_runs(exact_run, tmp_path, bad):
    """A malformed results or bounds file is a one-line InputError, and no output folder is started."""
    out, records = _copy(exact_run, tmp_path)
    results = _vnncomp(tmp_path, out, records, wrong=False)
    write_bounds_file(tmp_path / "bounds.json", _exact_claims(records))
    if bad == "results":
        results.write_text("stverify,onnx/tiny.onnx\n")
    else:
        (tmp_path / "bounds.json").write_text((tmp_path / "bounds.json").read_text().replace("-1000000.0", "NaN", 1))
    fresh = tmp_path / "fresh"
    with pytest.raises(InputError, match="columns" if bad == "results" else "NaN"):
        audit(exact_run[0] / "audit.toml", fresh, bounds_files={"tool": tmp_path / "bounds.json"},
              results={"tool": results}, manifest=tmp_path)
    assert not fresh.exists()


def test_cli_exit_status_and_report(exact_run, tmp_path, capsys):
    out, records = _copy(exact_run, tmp_path)
    write_bounds_file(tmp_path / "planted.json", _exact_claims(records, plant=(records[1], 6, 0)))
    assert main(["audit", str(exact_run[0] / "audit.toml"), "--out", str(out), "--resume",
                 "--bounds", f"planted={tmp_path / 'planted.json'}"]) == 1
    err = capsys.readouterr().err
    assert "UNSOUND CLAIMS: 1" in err and "planted" in err and "upper" not in err
    report = (out / "report.md").read_text()
    assert "## UNSOUND CLAIMS: 1" in report and "## Tightness per layer" in report
    assert (out / "figures" / "gap_per_layer.png").exists() and (out / "figures" / "claimed_vs_exact.png").exists()
    assert main(["audit", "--out", str(out), "--report-only"]) == 1  # the sources are remembered
    assert main(["audit", str(exact_run[0] / "audit.toml"), "--out", str(out)]) == 2  # results exist: --resume needed
    assert "pass --resume" in capsys.readouterr().err


def test_compare_bounds_flags_beyond_tolerance_only():
    ex = {"lo": [-1.0, 0.5, -3.0], "hi": [1.0, 2.0, 4.0], "lo_attained": [-1.0, 0.5, -2.0], "hi_attained": [1.0, 2.0, 4.0],
          "status": ["exact", "exact", "bound"]}
    c = compare_bounds(np.array([-1.0 + 5e-7, 0.5 + 2e-3, -2.5]), np.array([1.0, 1.999, 4.0]), ex, 1e-6)
    assert c["unsound_lo"].tolist() == [False, True, False] and c["unsound_hi"].tolist() == [False, True, False]
    assert c["undecided"].tolist() == [False, False, True]  # -2.5 lies between the sound -3 and the attained -2
    assert c["tight_lo"].tolist() == [True, False, False] and c["gap_hi"].tolist() == [0.0, 0.0, 0.0]


def test_bounds_file_formats_and_onnx_node_names(tmp_path):
    net = pretrained_network("tiny")
    model = load_pretrained("tiny")
    torch.onnx.export(model, torch.zeros((1,) + tuple(model.input_shape)), tmp_path / "tiny.onnx",
                      input_names=["x"], output_names=["logits"], dynamo=False)
    names = onnx_layer_map(tmp_path / "tiny.onnx", net)
    assert names["/0/Conv_output_0"] == [1] and names["/3/Gemm"] == [4] and names["logits"] == [6]
    assert names["/1/Relu_output_0"] == [2, 3]  # the ReLU output is also the (flattened) input of the Linear
    key = Key("tiny", "test", 0, "linf:eps=1/255")
    lo, hi = -np.arange(16.0), np.arange(16.0)
    entries = [{**key._asdict(), "layers": {"/3/Gemm_output_0": (lo, hi), 6: (-np.ones(4), np.ones(4))}}]
    for name in ("b.json", "b.npz"):
        write_bounds_file(tmp_path / name, entries, onnx="tiny.onnx")
        back = read_bounds_file(tmp_path / name)
        assert back[0].key == key._asdict()
        (claim,) = bounds_claims("t", back, {key: net}, {}, {}).values()  # the file's "onnx" resolves the names
        np.testing.assert_array_equal(claim.bounds[4][0], lo)
        np.testing.assert_array_equal(claim.bounds[6][1], np.ones(4))


@pytest.mark.parametrize("doc, match", [
    ({"format": "other", "instances": []}, "not a bounds file"),
    ({"format": "stverify-bounds/1", "instances": [{"model": "tiny", "layers": {}}]}, "missing split, index, threat"),
    ({"format": "stverify-bounds/1", "instances": [{"vnnlib": "a.vnnlib", "layers": {"4": {"lower": [0]}}}]},
     "needs 'lower' and 'upper'"),
    ({"format": "stverify-bounds/1", "instances": [{"vnnlib": "a.vnnlib", "layers": {"4": {"lower": [0, 1], "upper": [1]}}}]},
     "2 lower but 1 upper"),
])
def test_bad_bounds_files_name_the_problem(tmp_path, doc, match):
    (tmp_path / "b.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=match):
        read_bounds_file(tmp_path / "b.json")


def test_bounds_of_the_wrong_size_or_layer_are_refused(tmp_path):
    net = pretrained_network("tiny")
    key = Key("tiny", "test", 0, "linf:eps=1/255")
    write_bounds_file(tmp_path / "b.json", [{**key._asdict(), "layers": {4: (np.zeros(3), np.ones(3))}}])
    with pytest.raises(InputError, match="layer '4' has 3 bounds, the input of layer 4 has 16 entries"):
        bounds_claims("t", read_bounds_file(tmp_path / "b.json"), {key: net}, {}, {})
    write_bounds_file(tmp_path / "b.json", [{**key._asdict(), "layers": {"/3/Gemm": (np.zeros(16), np.ones(16))}}])
    with pytest.raises(InputError, match="no ONNX file is known for model tiny"):
        bounds_claims("t", read_bounds_file(tmp_path / "b.json"), {key: net}, {}, {})


def test_the_audit_modules_import_no_circle():
    """audit.py runs an audit and writes its report; report.py must not import audit.py back."""
    import ast
    import importlib
    from pathlib import Path

    import networkx as nx

    folder = Path(importlib.import_module("stverify.audit").__file__).parent
    graph = nx.DiGraph()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:  # from .x import ... / from . import x
                targets = [node.module] if node.module else [a.name for a in node.names]
                graph.add_edges_from((path.stem, t.split(".")[0]) for t in targets)
    graph.remove_nodes_from(["__init__"])
    assert ("audit", "report") in graph.edges  # what the check is about: audit.py uses the report
    assert nx.is_directed_acyclic_graph(graph), list(nx.simple_cycles(graph))


@pytest.mark.parametrize("extra,audit_table,words", [
    (["--workers", "0"], "", "workers must be >= 1, got 0"),
    ([], "neurons = 0", "[audit] neurons: expected a positive integer"),
    ([], "layers = [99]", "[audit] layers: [99]"),
    ([], 'exact = "magic"', "unknown method 'magic'"),
    ([], 'bounds = "exact"', "[audit] bounds: expected one of stbp, lp"),
    ([], "bounds_timeout = 0", "[audit] bounds_timeout must be > 0"),
    ([], '[[methods]]\nname = "milp"\nmethod = "milp"', "an audit checks the bound methods"),
])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, capsys, extra, audit_table, words):
    cfg = tmp_path / "a.toml"
    key = audit_table.partition(" =")[0]
    cfg.write_text("\n".join(line for line in CONFIG.splitlines() if not (key and line.startswith(key + " =")))
                   + "\n" + audit_table + "\n")
    assert main(["audit", str(cfg), "--out", str(tmp_path / "out")] + extra) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_report_only_refuses_claims_it_would_ignore(exact_run, tmp_path, capsys):
    out, _ = _copy(exact_run, tmp_path)
    before = (out / "report.md").read_text()
    assert main(["audit", "--out", str(out), "--report-only", "--results", f"t={tmp_path / 'r.csv'}"]) == 2
    err = capsys.readouterr().err
    assert "--results would be ignored" in err and len(err.strip().splitlines()) == 1
    assert (out / "report.md").read_text() == before
