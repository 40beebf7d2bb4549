"""``stverify report --import``: other tools' VNN-COMP results beside stverify's methods, matched through
the export manifest; contradictions and witnesses that do not replay are flagged."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from stverify.bench import load_config, read_results, run_bench, write_report
from stverify.data import data_path
from stverify.cli import main as cli_main
from stverify.data import load_sample
from stverify.errors import InputError
from stverify.interchange import export as ex
from stverify.interchange import vnncomp as vc
from stverify.interchange.manifest import read_manifest
from stverify.replay import replay
from stverify.threats import parse_threat
from stverify import zoo

from conftest import boundary_point

CONFIG = """timeout = 20
[[models]]
name = "tiny_std"
[samples]
n = 2
[[threats]]
kind = "linf"
eps = ["12/255"]
[[threats]]
kind = "anyframes"
eps = ["32/255"]
[[methods]]
name = "stbp-crown"
method = "stbp"
[[methods]]
name = "milp"
method = "milp"
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A bench run (2 inputs x 2 threats, STBP and MILP) and two exports of its config: one file per
    instance (DIR/export) and one file per member box (DIR/split)."""
    tmp = tmp_path_factory.mktemp("import")
    (tmp / "bench.toml").write_text(CONFIG)
    run_bench(load_config(tmp / "bench.toml"), tmp / "out", workers=2)
    items, nets, timeout = ex.items_from_config(tmp / "bench.toml")
    ex.export(items, nets, tmp / "export", timeout, log=lambda _: None)
    ex.export(items, nets, tmp / "split", timeout, split_members=True, log=lambda _: None)
    return tmp


def milp_records(run) -> dict:
    return {(r["model"], r["split"], r["index"], r["threat"]): r for r in read_results(run / "out" / "results.jsonl")
            if r["method"] == "milp"}


def honest_rows(run, folder, tool: str, truth: dict) -> list[list[str]]:
    """What a correct tool writes for every exported file: the MILP's verdict; a sat's witness is the MILP's
    counterexample if it lies in the file's set (a member box), else the file is unsat."""
    net = zoo.pretrained_network("tiny_std")
    rows = []
    for n, e in enumerate(read_manifest(folder)):
        r = truth[(e.model, e.split, e.index, e.member or e.threat)]
        result, witness = "unsat" if r["status"] == "falsified" else vc.STATUS_TO_RESULT[r["status"]], ""
        if r["status"] == "falsified":
            cex = np.load(run / "out" / r["counterexample"])
            x0, _ = load_sample(data_path(e.data), e.split, e.index)
            if parse_threat(e.threat).contains(x0, cex):
                result, witness = "sat", f"{tool}_{n}.txt"
                vc.write_result(folder / witness, "sat", vc.Witness(cex.ravel(), net.forward(cex)))
        rows.append(["stverify", f"./benchmarks/stverify/{e.onnx}", f"./benchmarks/stverify/{e.vnnlib}", "0.5", result,
                     "1.25", witness])
    return rows


def write_csv(path, rows) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


@pytest.mark.parametrize("folder", ["export", "split"])
def test_a_correct_tool_joins_the_tables(run, tmp_path, folder):
    out = tmp_path / "out"
    shutil.copytree(run / "out", out)
    truth = milp_records(run)
    write_csv(run / folder / "good.csv", honest_rows(run, run / folder, "good", truth))
    assert cli_main(["report", str(out), "--import", f"good={run / folder / 'good.csv'}"]) == 0
    found = write_report(out, [("good", run / folder / "good.csv")])
    assert found["violations"] == [] and found["imports"][0]["unmatched"] == 0 and found["imports"][0]["instances"] == 4
    statuses = {(r["index"], r["threat"]): r for r in read_results(out / "results.jsonl") if r["method"] == "milp"}
    assert {"verified", "falsified"} <= {r["status"] for r in statuses.values()}
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    with open(out / "methods.csv") as f:
        methods = [r for r in csv.DictReader(f) if r["method"] == "good"]
    assert len(summary) == 2 and all(r["good"] == r["milp"] for r in summary)
    assert len(methods) == 2 and sum(int(r["falsified"]) for r in methods) == sum(
        r["status"] == "falsified" for r in statuses.values())
    if folder == "export":  # one file per instance: the tool's time is its run time (else summed over members)
        assert all(float(r["median_s"]) == 1.25 for r in methods)
    report = (out / "report.md").read_text()
    assert "good †" in report and "## Imported results" in report and "0 violations" in report


def test_planted_contradiction_and_bad_witnesses_are_flagged(run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(run / "out", out)
    folder = run / "export"
    truth = milp_records(run)
    good = honest_rows(run, folder, "planted", truth)
    falsified = [n for n, row in enumerate(good) if row[4] == "sat"]
    assert falsified
    n = falsified[0]
    e = read_manifest(folder)[n]
    x0, _ = load_sample(data_path(e.data), e.split, e.index)
    net = zoo.pretrained_network("tiny_std")
    liar = [row[:] for row in good]
    liar[n][4:] = ["unsat", "1.0", ""]  # unsat where the MILP has a replayed counterexample
    write_csv(folder / "liar.csv", liar)
    vc.write_result(folder / "clean.txt", "sat", vc.Witness(x0.ravel(), net.forward(x0)))  # x0 is classified correctly
    noreplay = [row[:] for row in good]
    noreplay[n][6] = "clean.txt"
    write_csv(folder / "noreplay.csv", noreplay)
    far = np.clip(x0 + 0.5, 0, 1)  # outside every threat set of the run
    vc.write_result(folder / "far.txt", "sat", vc.Witness(far.ravel(), net.forward(far)))
    outside = [row[:] for row in good]
    outside[n][6] = "far.txt"
    nowitness = [row[:] for row in good]
    nowitness[n][6] = ""
    write_csv(folder / "outside.csv", outside)
    write_csv(folder / "nowitness.csv", nowitness)
    imports = [f"{name}={folder / (name + '.csv')}" for name in ("liar", "noreplay", "outside", "nowitness")]
    assert cli_main(["report", str(out)] + [a for i in imports for a in ("--import", i)]) == 1
    [bad] = write_report(out, [(i.split("=")[0], i.split("=")[1]) for i in imports])["violations"]
    assert (bad["index"], bad["threat"]) == (e.index, e.threat)
    why = bad["why"]
    assert "liar say verified" in why and "milp" in why and "the verified claims are wrong" in why
    assert "noreplay: falsified, but not misclassified on replay" in why
    assert "outside: falsified, but the counterexample lies outside the threat set" in why
    assert "nowitness: falsified, but no witness" in why
    assert "SOUNDNESS VIOLATIONS: 1" in (out / "report.md").read_text()


def test_boundary_witnesses_are_reported_not_violations(run, tmp_path, capsys):
    """A sat whose witness sits on the decision boundary (float64 margin just above 0, as Marabou's +1e-15)
    is a boundary witness: listed, exit 0; one whose margin lies beyond the tolerance is a violation, exit 1."""
    from stverify import tolerances

    out = tmp_path / "out"
    shutil.copytree(run / "out", out)
    folder = run / "export"
    truth = milp_records(run)
    good = honest_rows(run, folder, "edge", truth)
    n = next(n for n, row in enumerate(good) if row[4] == "sat")
    e = read_manifest(folder)[n]
    x0, _ = load_sample(data_path(e.data), e.split, e.index)
    net, threat = zoo.pretrained_network("tiny_std"), parse_threat(e.threat)
    cex = np.load(run / "out" / truth[(e.model, e.split, e.index, e.threat)]["counterexample"])

    def tool(name: str, target: float) -> Path:
        """The honest rows, but for instance n a witness of float64 margin just above ``target``."""
        point = boundary_point(net, x0, e.label, threat, cex, target)
        vc.write_result(folder / f"{name}.txt", "sat", vc.Witness(point.ravel(), net.forward(point)))
        rows = [row[:] for row in good]
        rows[n][6] = f"{name}.txt"
        write_csv(folder / f"{name}.csv", rows)
        assert target <= replay(net, x0, e.label, threat, point).margin64 < target + 1e-9
        return folder / f"{name}.csv"

    tool("edge", 0.0)
    assert cli_main(["report", str(out), "--import", f"edge={folder / 'edge.csv'}"]) == 0
    err = capsys.readouterr().err
    assert "boundary witness (not a violation): edge on tiny_std" in err and "soundness: 0 violations" in err
    found = write_report(out, [("edge", folder / "edge.csv")])
    [row] = found["boundary"]
    assert not found["violations"] and (row["method"], row["index"], row["threat"]) == ("edge", e.index, e.threat)
    assert max(row["margin_float64"], row["margin_float32"]) <= row["tol"] and row["margin_float64"] >= 0
    assert "1 boundary witness(es)" in (out / "report.md").read_text()
    with open(out / "boundary.csv") as f:
        assert len(list(csv.DictReader(f))) == 1
    tool("beyond", 50 * tolerances.WITNESS_TOL_REL * max(1.0, float(np.abs(net.forward(cex)).max())))
    assert cli_main(["report", str(out), "--import", f"beyond={folder / 'beyond.csv'}"]) == 1
    [bad] = write_report(out, [("beyond", folder / "beyond.csv")])["violations"]
    assert "beyond: falsified, but not misclassified on replay" in bad["why"] and "beyond the boundary tolerance" in bad["why"]


@pytest.mark.parametrize("name,index,threat", [("tiny_std_test3_linf_eps_8over255.txt", 3, "linf:eps=8/255"),
                                               ("tiny_std_test4_anyframes_eps_32over255_k_1_m3.txt", 4,
                                                "frames:eps=32/255,frames=3")])
def test_real_marabou_witnesses_are_boundary_witnesses(name, index, threat):
    """Marabou's sat witnesses on stverify's exports (tests/data/marabou/README.md) sit on the decision boundary:
    they do not replay strictly, yet they are no wrong verdict."""
    from stverify.data import ensure_dataset
    from stverify.interchange.witness import check_witness

    result, w = vc.read_result(Path(__file__).parent / "data" / "marabou" / name)
    x0, y = load_sample(ensure_dataset("video"), "test", index)
    net, th = zoo.pretrained_network("tiny_std"), parse_threat(threat)
    assert result == "sat" and not replay(net, x0, y, th, w.x.reshape(x0.shape)).ok
    chk = check_witness(net, x0, y, th, w.x)
    assert chk.kind == "boundary" and abs(chk.margin64) < 1e-12 and abs(chk.margin32) < 1e-6 < chk.tol
    assert not chk.contradicts(None) and not chk.contradicts(chk.tol / 2)


def test_a_proven_margin_rules_out_a_boundary_witness():
    """violations() with a stubbed witness check: a boundary witness stands beside a verified result only when
    that result's proven margin_lb does not exceed the witness's float64 margin plus the tolerance."""
    from stverify.bench.report import Instance, violations
    from stverify.interchange.witness import WitnessCheck

    edge = WitnessCheck("boundary", "a boundary witness (...)", 1e-15, -4e-7, 2.6e-4)
    for margin_lb, expected in ((1e-4, 0), (0.5, 1), (None, 0)):
        inst = Instance(("m", "test", 0, "linf:eps=1/255"), "linf", "1/255")
        inst.results = {"tool": {"status": "falsified", "call": {"method": "import"}, "margin_lb": None},
                        "milp": {"status": "verified", "call": {"method": "milp"}, "margin_lb": margin_lb}}
        bad, boundary = violations([inst], lambda r: edge)
        assert len(bad) == expected and len(boundary) == 1
        if expected:
            assert "milp says verified with margin_lb 0.5, but tool: a boundary witness" in bad[0]["why"]
    strict = WitnessCheck("counterexample", "", -0.3, -0.3, 2.6e-4)  # a replayed counterexample always contradicts
    bad, boundary = violations([inst], lambda r: strict if r["call"]["method"] == "import" else edge)
    assert len(bad) == 1 and "the verified claims are wrong" in bad[0]["why"] and not boundary


def test_import_errors(run, tmp_path, capsys):
    rows = [["b", "m.onnx", "elsewhere/x.vnnlib", "0", "unsat", "1"]]
    write_csv(tmp_path / "r.csv", rows)
    with pytest.raises(InputError, match="no export manifest"):
        write_report(run / "out", [("t", tmp_path / "r.csv")])
    shutil.copytree(run / "out", tmp_path / "out")
    found = write_report(tmp_path / "out", [("t", tmp_path / "r.csv")], manifest=run / "export" / "manifest.json")
    assert found["imports"][0]["unmatched"] == 1 and found["imports"][0]["instances"] == 0 and not found["violations"]
    with pytest.raises(InputError, match="already a method"):
        write_report(run / "out", [("milp", tmp_path / "r.csv")], manifest=run / "export")
    assert cli_main(["report", str(run / "out"), "--import", "nameless"]) == 2
    assert "expects NAME=results.csv" in capsys.readouterr().err


@pytest.mark.parametrize("results,status", [(["unsat"] * 4, "verified"), (["unsat", "unsat", "sat", "unsat"], "falsified"),
                                            (["unsat", "error", "sat", "unsat"], "falsified"),
                                            (["unsat", "timeout", "unknown", "unsat"], "timeout"),
                                            (["unsat", "unsat", "unsat"], "unknown"), (["unsat"] * 3 + [None], "unknown")])
def test_member_files_combine_into_the_union(tmp_path, results, status):
    """A union exported as 4 member files: verified only if every member is unsat."""
    from stverify.bench.imported import import_results
    from stverify.interchange.manifest import ExportedInstance, write_manifest

    union = "anyframes:eps=8/255,k=1"
    files = [ExportedInstance("onnx/tiny.onnx", f"vnnlib/m{k}.vnnlib", 10.0, "tiny", None, None, "video", "test", 0, 1,
                              f"frames:eps=8/255,frames={k}", union) for k in range(4)]
    write_manifest(tmp_path, files)
    rows = [["b", "x.onnx", f"vnnlib/m{k}.vnnlib", "0", r, "2"] for k, r in enumerate(results) if r]
    if len(results) == 3:
        rows.append(rows[0])  # a file twice is still one file
    write_csv(tmp_path / "r.csv", rows)
    [record], found = import_results("t", tmp_path / "r.csv")
    assert record["status"] == status and record["threat"] == union and found["unmatched"] == 0
    assert record["time_s"] == 2.0 * len(rows) and (status != "unknown" or "1 of 4 member files" in record["message"])
