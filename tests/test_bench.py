"""Benchmark runner: kill -9 and resume, dask vs local, the report's soundness check, hard timeouts."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stverify.bench import Store, load_config, read_results, run_bench, write_report
from stverify.cli import main as cli_main
from stverify.errors import InputError
from stverify.result import VerifyResult
from stverify.verify import register

HERE = Path(__file__).resolve().parent


@register("nap")
def _nap(net, x, y, threat, seconds: float = 0.0, **_):
    """Test-only method: sleeps, then gives up. Instance processes register it through ``plugins = ["test_bench"]``."""
    time.sleep(seconds)
    return VerifyResult("unknown", "nap", seconds, message="napped")


_COLD = [True]


@register("cold")
def _cold(net, x, y, threat, seconds: float = 0.0, **_):
    """Test-only method: its first call in a process sleeps (a one-time cost), the later ones do not."""
    if _COLD:
        _COLD.pop()
        time.sleep(seconds)
    return VerifyResult("unknown", "cold", 0.0, message="warm")


def _config(path: Path, methods: str, model="tiny_std", n=2, threats='kind = "linf"\neps = ["12/255"]', timeout=20,
            grace=5) -> Path:
    path.write_text(f"""timeout = {timeout}
grace = {grace}
plugins = ["test_bench"]
[[models]]
name = "{model}"
[samples]
n = {n}
[[threats]]
{threats}
{methods}""")
    return path


def _method(name, method, options="{}"):
    return f'[[methods]]\nname = "{name}"\nmethod = "{method}"\noptions = {options}\n'


REAL = _method("stbp-crown", "stbp") + _method("box-ibp", "box-ibp") + _method("milp", "milp", '{bounds = "stbp"}')
THREATS = 'kind = "linf"\neps = ["12/255"]\n[[threats]]\nkind = "anyframes"\neps = ["32/255"]'


def _statuses(out: Path) -> dict:
    return {(r["index"], r["threat"], r["method"]): r["status"] for r in read_results(out / "results.jsonl")}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """A local run (2 workers) of 2 inputs x 2 threats x 3 methods; its directory."""
    tmp = tmp_path_factory.mktemp("local")
    cfg = load_config(_config(tmp / "bench.toml", REAL, threats=THREATS))
    run_bench(cfg, tmp / "out", workers=2)
    return tmp


def test_sigkill_then_resume_loses_nothing(tmp_path):
    config = _config(tmp_path / "bench.toml", _method("stbp", "stbp") + _method("box", "box-ibp") +
                     _method("nap", "nap", "{seconds = 0.4}"), model="tiny", n=3)
    out = tmp_path / "out"
    results = out / "results.jsonl"
    cmd = [sys.executable, "-m", "stverify.cli", "bench", str(config), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (results.exists() and results.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, its forkserver and the instance processes
    proc.wait()
    before = [line for line in results.read_text().splitlines(keepends=True) if line.endswith("\n")]
    assert 1 <= len(before) < 9, "kill the run mid-way"
    with pytest.raises(ValueError, match="--resume"):
        Store(out)  # refuses to add to a run without --resume
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = results.read_text()
    assert text.startswith("".join(before))
    keys = [(r["index"], r["method"]) for r in map(json.loads, text.splitlines())]
    assert len(keys) == len(set(keys)) == 9


def test_dask_gives_the_local_statuses(local_run, tmp_path):
    from distributed import LocalCluster

    cfg = load_config(local_run / "bench.toml")
    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster:
        run_bench(cfg, tmp_path / "dask", dask=cluster.scheduler_address)
    local = _statuses(local_run / "out")
    assert len(local) == 12 and {"verified", "falsified"} <= set(local.values())
    assert _statuses(tmp_path / "dask") == local


def test_report_flags_a_contradiction(local_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(local_run / "out", out)
    assert cli_main(["report", str(out)]) == 0
    assert (out / "figures" / "cactus.png").exists() and "0 violations" in (out / "report.md").read_text()
    records = read_results(out / "results.jsonl")
    verified = next(r for r in records if r["status"] == "verified" and r["method"] == "stbp-crown")
    fake = {**verified, "method": "fake-milp", "call": {**verified["call"], "method": "milp"}, "status": "falsified"}
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(fake) + "\n")
    assert cli_main(["report", str(out)]) == 1
    bad = write_report(out)["violations"]
    assert len(bad) == 1 and bad[0]["index"] == verified["index"] and "fake-milp" in bad[0]["why"]
    assert "SOUNDNESS VIOLATIONS: 1" in (out / "report.md").read_text()


def test_hard_timeout_kills_a_stuck_instance(tmp_path):
    cfg = load_config(_config(tmp_path / "bench.toml", _method("stuck", "nap", "{seconds = 60}"), n=1, timeout=0.5, grace=0.5))
    start = time.monotonic()
    run_bench(cfg, tmp_path / "out")
    [r] = read_results(tmp_path / "out" / "results.jsonl")
    assert r["status"] == "timeout" and "killed" in r["message"]
    assert 1.0 <= r["wall_s"] < 10 and time.monotonic() - start < 40


def test_times_are_warm(tmp_path):
    """time_s leaves out what only a process's first call pays (the runner's warm-up), wall_s not."""
    cfg = load_config(_config(tmp_path / "bench.toml", _method("cold", "cold", "{seconds = 1.5}"), n=1))
    run_bench(cfg, tmp_path / "out")
    [r] = read_results(tmp_path / "out" / "results.jsonl")
    assert r["status"] == "unknown" and r["time_s"] < 0.5 <= 1.5 <= r["warm_up_s"] <= r["wall_s"]
    write_report(tmp_path / "out")
    assert "warm: measured" in (tmp_path / "out" / "report.md").read_text()


def test_a_model_with_an_output_property(tmp_path):
    """``property =`` on a model: every instance verifies it (here top-2 on a classifier), the records
    name it, the complete method agrees with the bound where the bound decides, and a property that
    needs no label runs on a regression dataset, which a label benchmark refuses."""
    cfg = _config(tmp_path / "p.toml", _method("stbp", "stbp") + _method("milp", "milp"), model="tiny_std", n=3)
    cfg.write_text(cfg.read_text().replace('name = "tiny_std"', 'name = "tiny_std"\nproperty = "topk:k=2"'))
    run_bench(load_config(cfg), tmp_path / "out", workers=1)
    records = read_results(tmp_path / "out" / "results.jsonl")
    assert len(records) == 6 and {r["property"] for r in records} == {"topk:k=2"}
    by = {(r["index"], r["method"]): r["status"] for r in records}
    assert all(by[(i, "milp")] == "verified" for (i, m), s in by.items() if m == "stbp" and s == "verified")
    assert write_report(tmp_path / "out") is not None
    import numpy as np
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "reg.npz", x=rng.uniform(size=(5, 4, 10, 10)), y=rng.uniform(-1, 1, 5))  # float targets
    bad = _config(tmp_path / "r.toml", _method("stbp", "stbp"), model="tiny_std")
    bad.write_text(bad.read_text().replace('name = "tiny_std"', 'name = "tiny_std"\ndata = "reg.npz"'))
    with pytest.raises(InputError, match="regression targets"):
        run_bench(load_config(bad), tmp_path / "bad")
    bad.write_text(bad.read_text().replace('data = "reg.npz"', 'data = "reg.npz"\nproperty = "deviation:delta=0.5,output=1"'))
    run_bench(load_config(bad), tmp_path / "reg")
    assert {r["label"] for r in read_results(tmp_path / "reg" / "results.jsonl")} == {-1}


def test_a_spec_is_reported_under_the_kind_given_beside_it(tmp_path):
    """``kind`` beside ``spec`` labels its rows (ST-Bench's anyframes over a window of slices is an anypatch
    spec); a spec alone is reported under its own kind."""
    threats = ('kind = "anyframes"\nspec = "anypatch:eps={eps},len=1,h=5,w=5,area=1-3-0-5-0-5"\neps = ["4/255"]\n'
               '[[threats]]\nspec = "anypatch:eps={eps},len=2,h=2,w=2"\neps = ["4/255"]')
    cfg = load_config(_config(tmp_path / "bench.toml", REAL, threats=threats))
    assert [(g.kind, g.template.partition(":")[0]) for g in cfg.threats] == [("anyframes", "anypatch"), ("anypatch", "anypatch")]
    bad = _config(tmp_path / "bad.toml", REAL, threats='kind = "everywhere"\nspec = "linf:eps={eps}"\neps = ["4/255"]')
    with pytest.raises(InputError, match="give kind"):
        load_config(bad)
