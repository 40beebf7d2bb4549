"""The command line as a scripting tool: one JSON document on stdout whatever the solver prints,
one table row per method, saved counterexamples that can be drawn, --help everywhere, the README's
commands."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import stverify as sv
from stverify import cli, counterexample, zoo
from stverify.cli import main
from stverify.replay import replay
from stverify.result import VerifyResult
from stverify.threats import parse_threat

README = Path(__file__).resolve().parents[1] / "README.md"
FALSIFIABLE = ["--model", "tiny_std", "--index", "1", "--threat", "anyframes:k=1,eps=32/255"]
SOLVER_RUNS = [("stbp", []), ("box-ibp", []), ("milp", ["--solver", "scip"]), ("milp", ["--solver", "highs"]),
               ("milp", ["--solver", "gurobi"]), ("smt", []), ("bab", ["--solver", "highs"]), ("all", [])]


@pytest.mark.parametrize("method,extra", SOLVER_RUNS, ids=[f"{m}{'-' + e[1] if e else ''}" for m, e in SOLVER_RUNS])
def test_json_stdout_is_exactly_one_document(method, extra, capfd, torch_one_thread):
    """capfd captures file descriptors, so anything a solver prints from C would show here."""
    rc = main(["verify", *FALSIFIABLE, "--method", method, *extra, "--timeout", "20", "--json"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    doc = json.loads(out)
    assert out.count("\n") == 1 and doc["method"] == method and doc["instance"]["label"] == 3
    assert {"status", "margin_lb", "margin_ub", "stats", "message", "counterexample"} <= doc.keys()
    if method == "all":
        assert isinstance(doc["stats"]["methods"], dict) and "milp-scip" in doc["stats"]["methods"]
        assert all(set(r) >= {"status", "margin_lb", "margin_ub", "time_s", "message"} for r in doc["stats"]["methods"].values())
        assert "reproduce" not in json.dumps(doc)  # the input is not embedded


def test_json_in_a_fresh_process_with_highs():
    """HiGHS prints its banner once per process, when the first model is created: a fresh process."""
    r = subprocess.run([sys.executable, "-m", "stverify.cli", "verify", *FALSIFIABLE, "--method", "milp", "--solver", "highs",
                        "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "falsified"


def test_method_all_shows_one_row_per_method_and_why_a_solver_was_skipped(monkeypatch, capsys, torch_one_thread):
    milp = sv.METHODS["milp"]

    def no_gurobi(*a, solver="scip", bounds="stbp", **k):
        if solver == "gurobi":
            return VerifyResult("error", "milp", 0.0, message="Gurobi refused the model: the licence is size-limited")
        return milp(*a, solver=solver, bounds=bounds, **k)

    monkeypatch.setitem(sv.METHODS, "milp", no_gurobi)
    assert main(["verify", *FALSIFIABLE, "--method", "all", "--timeout", "10"]) == 0
    out = capsys.readouterr().out
    for row in ("attack", "stbp", "milp-scip", "milp-highs", "milp-gurobi", "smt", "all (verdict)"):
        assert re.search(rf"│ {re.escape(row)} +│", out), row
    flat = " ".join(out.replace("│", " ").split())  # the details column wraps
    assert "milp-gurobi skipped" in flat and "licence" in flat


def test_errors_are_never_hidden_in_the_table(capsys):
    assert "licence" in cli._details("error", {"binaries": 12, "unstable_relus": 3}, "Gurobi: the licence is size-limited")
    assert cli._details("verified", {"binaries": 12}, "fine") == "binaries=12"


@pytest.mark.parametrize("threat,method", [("anyframes:k=1,eps=32/255", "milp"), ("anypatch:eps=96/255,len=2,h=3,w=3", "bab")])
def test_a_saved_counterexample_is_self_contained_and_drawn(threat, method, tmp_path, capsys, torch_one_thread):
    path = tmp_path / "cex.npz"
    assert main(["verify", "--model", "tiny_std", "--index", "1", "--threat", threat, "--method", method,
                 "--save-counterexample", str(path)]) == 0
    assert "stverify render" in capsys.readouterr().err
    d = counterexample.load(path)
    net = zoo.pretrained_network("tiny_std")
    th = parse_threat(threat)
    assert d["threat"] == th and d["label"] == 3 and d["info"]["method"] == method
    assert replay(net, d["x0"], d["label"], th, d["counterexample"]).ok
    changed = np.flatnonzero(np.any(np.abs(d["counterexample"] - d["x0"]) > 1e-12, axis=(0, 2, 3)))
    assert set(changed) <= set(d["frames"]) and d["frames"] == d["member"]["frames"]
    if "y" in d["member"]:  # the chosen placement covers every changed voxel
        m = d["member"]
        delta = np.zeros(d["x0"].shape[1:], bool)
        delta[m["t0"]:m["t0"] + th.len, m["y"]:m["y"] + m["h"], m["x"]:m["x"] + m["w"]] = True
        assert not np.any(np.any(np.abs(d["counterexample"] - d["x0"]) > 1e-12, axis=0) & ~delta)
    with np.load(path, allow_pickle=False) as z:  # readable without stverify, without pickle
        assert {"x0", "counterexample", "label", "threat", "member", "frames"} <= set(z.files)
    predicted = int(net.predict(d["counterexample"]))  # the picture names the class that wins, and the margins
    assert predicted != 3 and d["info"]["predicted"] == predicted
    logits = net.forward(d["counterexample"])
    assert d["info"]["margin_float64"] == pytest.approx(logits[3] - np.delete(logits, 3).max())
    assert d["info"]["margin_float64"] < 0 and d["info"]["margin_float32"] < 0
    assert f"label 3, predicted {predicted} (margin float64 {d['info']['margin_float64']:.4g}, float32 " \
        in counterexample.title(d)
    assert main(["render", str(path), "--out", str(tmp_path / "cex.png")]) == 0
    assert (tmp_path / "cex.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name,words", [("cex.xyz", "unknown image format '.xyz'"), ("no/such/cex.png", "does not exist"),
                                        (".", "is a directory")])
def test_render_refuses_an_image_file_it_cannot_write(name, words, tmp_path, capsys):
    x0 = np.zeros((1, 2, 3, 3))
    path = counterexample.save(tmp_path / "cex.npz", x0, x0 + 0.1, 0, parse_threat("linf:eps=0.1"))
    assert main(["render", str(path), "--out", str(tmp_path / name)]) == 2  # refused before drawing
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / name).is_file()
    assert "predicted class not recorded" in counterexample.title(counterexample.load(path))  # saved without the network


def test_nothing_is_saved_without_a_counterexample(tmp_path, capsys):
    path = tmp_path / "cex.npz"
    assert main(["verify", "--model", "tiny", "--threat", "linf:eps=1/255", "--save-counterexample", str(path)]) == 0
    assert not path.exists() and "nothing saved" in capsys.readouterr().err


def test_help_works_on_every_sub_command(capsys):
    commands = [a for a in cli.build_parser()._actions if a.dest == "command"][0].choices
    assert {"demo", "verify", "train", "render", "bench", "report"} <= set(commands)
    for name in commands:
        assert main([name, "--help"]) == 0
        assert f"usage: stverify {name}" in capsys.readouterr().out


def test_the_readme_train_command_works(tmp_path, monkeypatch, capsys):
    from stverify.zoo import train as zt

    line = next(l.strip() for l in README.read_text().splitlines() if l.strip().startswith("stverify train "))
    real = zt.train
    monkeypatch.setattr(zt, "train", lambda name, **kw: real(name, **{**kw, "epochs": 1, "n_train": 16, "n_test": 8,
                                                                     "threads": 1}))
    monkeypatch.chdir(tmp_path)
    assert main(shlex.split(line)[1:] + ["--quiet"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["name"] in line and list(tmp_path.rglob("*.pt"))


def test_debug_shows_the_traceback_for_any_error(capsys):
    assert main(["verify", "--model", "tiny", "--threat", "linf:eps=1/255", "--label", "9", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: --label 9")


def test_extension_sub_commands_get_the_same_error_handling(monkeypatch, capsys):
    from stverify.errors import InputError

    def register(sub):
        sub.add_parser("user").set_defaults(func=lambda args: (_ for _ in ()).throw(InputError("bad thing in FILE")))
        sub.add_parser("bug").set_defaults(func=lambda args: [][1])

    base = cli._extensions
    monkeypatch.setattr(cli, "_extensions", lambda: base() + [register])
    assert main(["user"]) == 2 and capsys.readouterr().err == "error: bad thing in FILE\n"
    assert main(["bug"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a bug in stverify" in err and "IndexError" in err


def test_the_tradeoff_script_runs_fresh_unless_told_to_resume(tmp_path):
    script = Path(__file__).resolve().parents[1] / "experiments" / "tradeoff" / "run.sh"
    fake = tmp_path / "stverify"
    log = tmp_path / "calls"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    out = tmp_path / "out"
    for resume in (True, False):
        out.mkdir(exist_ok=True)
        (out / "results.jsonl").write_text('{"status": "verified"}\n')
        log.write_text("")
        r = subprocess.run(["bash", str(script), "main", "--out", str(out), "--workers", "2"] + (["--resume"] if resume else []),
                           env={"STVERIFY": str(fake), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        bench, report = log.read_text().splitlines()
        assert bench.startswith("bench ") and bench.endswith("main.toml --out " + str(out) + (" --resume" if resume else "")
                                                            + " --workers 2") and report == f"report {out}"
        assert (out / "results.jsonl").exists() == resume
    r = subprocess.run(["bash", str(script), "nosuchstudy"], env={"STVERIFY": str(fake), "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no study" in r.stderr
