"""Graph speed and memory (issue 16): STBP on residual graphs against chains, chains against the
old commit, and the R3D-18-topology model under a 4 GB budget.

Three parts (``--part``; default all), every bound a ``certify`` call (STBP: exact first layer,
exact concretisation over the threat set) in one torch thread:

* ``graph``: residual networks (a stem conv, an identity block, a downsampling block with a
  strided 1x1x1 conv + BatchNorm shortcut, global average pooling, a linear head; He-initialised)
  at three sizes (``GRAPH_SIZES``) under linf, anyframes:k=1 and anypatch, each against
  (a) ``plain``: the chain of the same main-path nodes, skip and shortcut removed (the same
  arithmetic minus the Adds and the shortcut), and (b) ``twin``: the chain computing the same
  function (a skip carried through a ReLU as relu(s), relu(-s), as in tests/test_graph_paths.py).
  Timed: the CROWN backward pass of the same neurons (``--rows``) of the last ReLU's input, and,
  on the smallest size, whole STBP-CROWN calls, whose margin lower bounds (graph, twin) are
  reported side by side.  The three interleaved in a rotating order, --reps rounds.
* ``chain``: the zoo chains tiny, small, medmnist, test inputs 0-2, STBP with ibp, crown and
  alpha-crown under linf, anyframes:k=1 and anypatch at eps 4/255, the old commit (--old: its
  ``src``) and this checkout each in one long-lived worker process, the two interleaved per
  configuration (old, new, new, old, ...), each turn a batch of warm calls; the ratio new / old of
  every round's two batch medians, and a check that the margins are identical (``--only``
  measures some configurations again).
* ``r3d``: ``zoo.network("r3d18_small")`` (3x16x112x112, untrained) on a seeded random input under
  linf, anyframes:k=1 and anypatch at eps 1/255, each run in a fresh process whose address space
  is limited to 4 GiB (``RLIMIT_AS``): wall time and peak RSS (ru_maxrss) of STBP-CROWN-IBP (``relaxation="crown-ibp"``:
  CROWN on the margins over IBP boxes), and of STBP-CROWN cut to IBP after ``--r3d-timeout`` s; and the CPU time per
  CROWN row from each tensor STBP-CROWN refines (``part_r3d``).

Every time is measured warm (after one untimed call); the ratios use CPU time (one thread), which
counts this process's work and not the time other jobs on the shared cores took.

Results: ``results/graph_bench/graph_bench.jsonl`` (one line per measurement) and
``results/graph_bench/graph_bench.md`` (the tables, rebuilt from the .jsonl of every part run).

    git worktree add /tmp/old011 011dddd        # or: git archive 011dddd | tar -x -C /tmp/old011
    PYTHONPATH=src .venv/bin/python experiments/graph_bench.py --old /tmp/old011/src   # about 20 min
    PYTHONPATH=src .venv/bin/python experiments/graph_bench.py --part graph --reps 9
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEW_SRC = HERE.parent / "src"
RESULTS = HERE / "results" / "graph_bench"
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
BATCH_S = 0.15  # a timed turn runs warm calls for about this long (at least one call)

GRAPH_SIZES = {  # name: (input shape C x T x H x W, stem stride, channels, classes); whole calls on the first
    "1x4x10x10-c4-8": ((1, 4, 10, 10), (1, 1, 1), 4, 4),
    "1x8x16x16-c4-8": ((1, 8, 16, 16), (1, 1, 1), 4, 4),
    "3x16x32x32-c8-16": ((3, 16, 32, 32), (1, 2, 2), 8, 10),
}
GRAPH_THREATS = ("linf:eps=1/255", "anyframes:k=1,eps=2/255", "anypatch:eps=4/255,len=2,h=4,w=4")
CHAIN_MODELS = {"tiny": "video", "small": "video8", "medmnist": "volume"}
CHAIN_THREATS = ("linf:eps=4/255", "anyframes:k=1,eps=4/255", "anypatch:eps=4/255,len=2,h=3,w=3")
RELAXATIONS = ("ibp", "crown", "alpha-crown")
R3D_THREATS = ("linf:eps=1/255", "anyframes:k=1,eps=1/255", "anypatch:eps=1/255,len=2,h=8,w=8")
R3D_LIMIT = 4 << 30
R3D_ROWS = 4  # neurons per refined tensor whose CROWN rows (lower and upper) part r3d times


def _quiet_torch():
    import torch

    torch.set_num_threads(1)
    return torch


# --- part graph: residual networks and their chains ---------------------------------------------

def _conv(rng, cout, cin, k, stride=1):
    """A He-initialised Conv3d (cube kernel k, padding k // 2) with a small bias."""
    from stverify.network import Conv3d

    w = rng.normal(scale=math.sqrt(2.0 / (cin * k ** 3)), size=(cout, cin, k, k, k))
    return Conv3d(w, rng.normal(scale=0.05, size=cout), stride, k // 2)


def _centre_tap(w1x1, k: int = 3):
    """O x C x 1x1x1 weights as the centre tap of a k-kernel (the same map under padding k // 2)."""
    import numpy as np

    w = np.zeros(w1x1.shape[:2] + (k, k, k))
    w[:, :, k // 2, k // 2, k // 2] = w1x1[:, :, 0, 0, 0]
    return w


def residual_family(size: str, seed: int = 0):
    """(graph, plain, twin) for ``GRAPH_SIZES[size]``: the residual graph

        h = relu(stem(x)); r = relu(c2(relu(c1(h))) + h);
        o = relu(d2(relu(d1(r))) + bn(sc(r))); logits = fc(mean(o)),

    its main path alone (``plain``: the Adds and sc, bn removed) and its exact chain twin
    (``twin``: c1 -> [c1; I; -I], c2 -> [c2 | I | -I] carry h as relu(h) - relu(-h); d1 ->
    [d1; S; -S], d2 -> [d2 | I | -I] with S = bn(sc) as a centre tap carry the shortcut)."""
    import numpy as np
    from stverify.network import Add, AvgPool3d, BatchNorm, Conv3d, Flatten, Linear, Network, ReLU

    shape, stem_stride, c, classes = GRAPH_SIZES[size]
    rng = np.random.default_rng(seed)
    stem = _conv(rng, c, shape[0], 3, stem_stride)
    c1, c2 = _conv(rng, c, c, 3), _conv(rng, c, c, 3)
    d1, d2, sc = _conv(rng, 2 * c, c, 3, 2), _conv(rng, 2 * c, 2 * c, 3), _conv(rng, 2 * c, c, 1, 2)
    bn = BatchNorm(rng.uniform(0.5, 1.5, 2 * c), rng.normal(scale=0.1, size=2 * c))
    grid = d1.output_shape(stem.output_shape(shape))[1:]
    head = [AvgPool3d.global_(grid), Flatten(), Linear(rng.normal(scale=(2 * c) ** -0.5, size=(classes, 2 * c)),
                                                       rng.normal(scale=0.05, size=classes))]
    graph = Network([stem, ReLU(), c1, ReLU(), c2, Add(), ReLU(), d1, ReLU(), d2, sc, bn, Add(), ReLU()] + head,
                    shape, f"res-{size}", [(0,), (1,), (2,), (3,), (4,), (5, 2), (6,), (7,), (8,), (9,), (7,), (11,),
                                           (10, 12), (13,), (14,), (15,), (16,)])
    plain = Network([stem, ReLU(), c1, ReLU(), c2, ReLU(), d1, ReLU(), d2, ReLU()] + head, shape, f"plain-{size}")
    eye = lambda n, sign=1.0: _centre_tap(sign * np.eye(n)[:, :, None, None, None])  # noqa: E731
    s_w = _centre_tap(sc.weight * bn.scale[:, None, None, None, None])
    s_b = sc.bias * bn.scale + bn.shift
    twin = Network([stem, ReLU(),
                    Conv3d(np.concatenate([c1.weight, eye(c), eye(c, -1.0)]), np.concatenate([c1.bias, np.zeros(2 * c)]),
                           1, 1), ReLU(),
                    Conv3d(np.concatenate([c2.weight, eye(c), eye(c, -1.0)], 1), c2.bias, 1, 1), ReLU(),
                    Conv3d(np.concatenate([d1.weight, s_w, -s_w]), np.concatenate([d1.bias, s_b, -s_b]), 2, 1), ReLU(),
                    Conv3d(np.concatenate([d2.weight, eye(2 * c), eye(2 * c, -1.0)], 1), d2.bias, 1, 1), ReLU()] + head,
                   shape, f"twin-{size}")
    return graph, plain, twin


def _timed_calls(fn, budget_s: float = BATCH_S) -> dict[str, list[float]]:
    """Per-call wall and CPU times (``times``, ``cpu``) of warm calls of fn, as many as fit in about
    ``budget_s`` (at least one).  In one thread, CPU time is what the ratios use: it counts this
    process's work, not the time other jobs on the shared cores took."""
    out, start = {"times": [], "cpu": []}, time.perf_counter()
    while not out["times"] or time.perf_counter() - start < budget_s:
        t, c = time.perf_counter(), time.process_time()
        fn()
        out["cpu"].append(time.process_time() - c)
        out["times"].append(time.perf_counter() - t)
    return out


def _last_relu_input(net) -> int:
    """The node whose output the last ReLU reads (the graph's last Add; the chains' last Conv3d)."""
    return max(net.relu_inputs.values()) - 1


def part_graph(reps: int, rows: int, emit) -> None:
    """Per size and threat: (rows) ``crown_refine`` of the same ``rows`` neurons of the last ReLU's
    input (lower and upper: 2 x ``rows`` backward rows to the input), given each net's own IBP
    bounds of every tensor (computed once, untimed; the arithmetic of a backward pass does not
    depend on the values): graph vs the same arithmetic (plain) and vs the twin; (e2e) whole
    ``certify`` calls (STBP-CROWN), on the first size only (seconds a call on larger ones)."""
    import numpy as np
    import stverify as sv
    from stverify.stbp_hybrid.certify import certify, make_support, torch_layers
    from stverify.stbp_hybrid.propagate import crown_refine, layer_bounds

    torch = _quiet_torch()
    for s, size in enumerate(GRAPH_SIZES):
        nets = dict(zip(("graph", "plain", "twin"), residual_family(size)))
        x = np.random.default_rng(1).uniform(0, 1, nets["graph"].input_shape)
        gap = float(np.max(np.abs(nets["graph"].forward(x) - nets["twin"].forward(x))))
        assert gap < 1e-9, f"the twin of {size} computes another function (max difference {gap})"
        labels = {k: int(n.predict(x)) for k, n in nets.items()}
        shape = nets["graph"].shapes[_last_relu_input(nets["graph"]) + 1]
        picked = np.random.default_rng(2).choice(math.prod(shape), min(rows, math.prod(shape)), replace=False)
        which = torch.zeros(math.prod(shape), dtype=torch.bool)
        which[torch.as_tensor(picked)] = True
        which = which.reshape((1,) + shape)
        for threat in GRAPH_THREATS:
            th = sv.parse_threat(threat)
            calls, info = {}, {}
            for k, net in nets.items():
                layers, sup = torch_layers(net), make_support(x, th, "threat")
                with torch.no_grad():
                    bounds = layer_bounds(layers, sup, "ibp")
                j = _last_relu_input(net)
                assert tuple(bounds[j + 1][0].shape[1:]) == shape
                refine = (lambda layers=layers, bounds=bounds, sup=sup, j=j:
                          crown_refine(layers, bounds, sup, j, bounds[j + 1][0], bounds[j + 1][1], which))
                with torch.no_grad():
                    lo, hi = refine()
                calls[(k, "rows")] = refine
                info[(k, "rows")] = {"mean_width": float((hi - lo)[which].mean())}
                if s == 0:
                    cert = certify(net, x, labels[k], th, "crown")  # the untimed warm call
                    calls[(k, "e2e")] = lambda net=net, y=labels[k]: certify(net, x, y, th, "crown")
                    info[(k, "e2e")] = {"margin_lb": cert.min_margin, "unstable": sum(cert.unstable.values())}
            order = list(nets)
            for rep in range(reps):
                for k in order[rep % 3:] + order[:rep % 3]:
                    for (name, what), fn in calls.items():
                        if name == k:
                            with torch.no_grad():
                                timed = _timed_calls(fn)
                            emit({"part": "graph", "what": what, "size": size, "threat": threat, "net": k, "rep": rep,
                                  "rows": 2 * rows, "n_relus": nets[k].n_relus, **info[(k, what)], **timed})
            print(f"graph {size} {threat}: " + ", ".join(f"{k} {v}" for k, v in info.items()), file=sys.stderr, flush=True)


# --- part chain: the zoo chains, old commit vs this checkout ------------------------------------

def worker(src: str) -> None:
    """Serve timing requests on stdin (one JSON object a line: model, index, relaxation, threat,
    inputs file) with the stverify found at ``src``: one JSON line back each, the per-call times of
    a batch of warm calls and the margins of the last call."""
    sys.path.insert(0, src)
    import numpy as np
    import stverify as sv
    from stverify import zoo
    from stverify.stbp_hybrid.certify import certify

    _quiet_torch()
    load = getattr(zoo, "network", None) or zoo.pretrained_network
    nets, data = {}, {}
    for line in sys.stdin:
        req = json.loads(line)
        if req["model"] not in nets:
            nets[req["model"]] = load(req["model"])
            data[req["model"]] = np.load(req["inputs"])
        net, d = nets[req["model"]], data[req["model"]]
        x, y, th = d["x"][req["index"]], int(d["y"][req["index"]]), sv.parse_threat(req["threat"])
        box = {}
        timed = _timed_calls(lambda: box.update(c=certify(net, x, y, th, req["relaxation"])), req["budget_s"])
        print(json.dumps({**timed, "margin_lb": [float(m) for m in box["c"].margin_lb],
                          "stverify": str(Path(sv.__file__).parent)}), flush=True)


class Worker:
    def __init__(self, src: str):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", src], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env={**os.environ, **ENV})

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.proc.args[-1]} died (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def _chain_inputs(tmp: Path) -> dict[str, str]:
    """The first 3 test inputs of every chain model's dataset, one .npz per model (x, y)."""
    import numpy as np
    import stverify as sv

    out = {}
    for model, dataset in CHAIN_MODELS.items():
        xs, ys = zip(*(sv.load_sample(dataset, "test", i) for i in range(3)))
        out[model] = str(tmp / f"{model}.npz")
        np.savez(out[model], x=np.stack(xs), y=np.array(ys))
    return out


def _chain_name(model: str, relaxation: str, threat: str) -> str:
    return f"{model}/{relaxation}/{threat}"


def part_chain(old_src: str, reps: int, only: list[str] | None, emit) -> None:
    """``only``: the configurations (``_chain_name``) to measure, all when None."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs = _chain_inputs(Path(tmp))
        workers = {"old": Worker(old_src), "new": Worker(str(NEW_SRC))}
        try:
            for model in CHAIN_MODELS:
                for relaxation in RELAXATIONS:
                    for threat in CHAIN_THREATS:
                        if only and _chain_name(model, relaxation, threat) not in only:
                            continue
                        for index in range(3):
                            req = dict(model=model, index=index, relaxation=relaxation, threat=threat,
                                       inputs=inputs[model])
                            warm = {k: w.ask(**req, budget_s=0.0) for k, w in workers.items()}
                            same = warm["old"]["margin_lb"] == warm["new"]["margin_lb"]
                            for rep in range(reps):
                                for k in (("old", "new") if rep % 2 == 0 else ("new", "old")):
                                    res = workers[k].ask(**req, budget_s=BATCH_S)
                                    emit({"part": "chain", "version": k, "rep": rep, "same_margins": same,
                                          "margin_lb": res["margin_lb"], "times": res["times"], "cpu": res["cpu"],
                                          **{key: req[key] for key in ("model", "index", "relaxation", "threat")}})
                            print(f"chain {model} #{index} {relaxation} {threat}: margins identical {same}",
                                  file=sys.stderr, flush=True)
        finally:
            for w in workers.values():
                w.close()


# --- part r3d: the R3D-18-topology model under 4 GiB ---------------------------------------------

R3D_CALL = """
import json, math, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
sys.path.insert(0, {src!r})
import numpy as np, torch
torch.set_num_threads(1)
import stverify as sv
from stverify import zoo
from stverify.stbp_hybrid.certify import certify, make_support, torch_layers
from stverify.stbp_hybrid.propagate import closed_form_nodes, crown_refine, layer_bounds
net = zoo.network("r3d18_small")
x = np.random.default_rng(0).uniform(0, 1, net.input_shape)
y, threat, mode, timeout = int(net.predict(x)), sv.parse_threat({threat!r}), {mode!r}, {timeout!r}
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if mode == "crown-ibp":
    cert = certify(net, x, y, threat, "crown-ibp")
    margin, done = cert.min_margin, True
elif mode == "rows":  # CPU time of CROWN rows from every tensor STBP refines, a few sampled neurons each
    layers, sup = torch_layers(net), make_support(x, threat, "threat")
    closed, per_tensor = closed_form_nodes(layers), []
    with torch.no_grad():
        bounds = layer_bounds(layers, sup, "ibp")
        for t in sorted(set(net.relu_inputs.values()) - {{j + 1 for j in closed}}):
            lo, hi = bounds[t]
            which = torch.zeros(lo.numel(), dtype=torch.bool)
            which[torch.as_tensor(np.random.default_rng(t).choice(lo.numel(), {rows}, replace=False))] = True
            c = time.process_time()
            crown_refine(layers, bounds, sup, t - 1, lo, hi, which.reshape(lo.shape))
            per_tensor.append({{"node": net.names[t - 1], "neurons": lo.numel(),
                               "cpu_per_row_s": (time.process_time() - c) / (2 * {rows})}})
    margin, done = None, True
else:
    cert = certify(net, x, y, threat, "crown", deadline=time.perf_counter() + timeout if timeout else math.inf)
    margin, done = cert.min_margin, not cert.stats["deadline_passed"]
print(json.dumps({{"time_s": time.perf_counter() - t, "margin_lb": margin, "completed": done, "label": y,
                  **({{"per_tensor": per_tensor}} if mode == "rows" else {{}}),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_mb": rss0 / 1024}}))
"""


def part_r3d(timeout: float, emit) -> None:
    """Per threat, each in a fresh process under RLIMIT_AS = 4 GiB: (crown-ibp) STBP with CROWN on the
    margins over IBP boxes of every tensor: the deepest backward pass there is, dense rows from the
    logits through all 48 nodes to the input, concretised over the set; (stbp) ``certify`` STBP-CROWN,
    CROWN on every unstable intermediate neuron, cut to IBP after ``timeout`` seconds (0: none);
    (rows, linf only) the CPU time per CROWN row from each tensor STBP refines (R3D_ROWS sampled
    neurons, on IBP bounds), hence what refining every neuron would take."""
    for threat in R3D_THREATS:
        for mode in ("crown-ibp", "stbp") + (("rows",) if threat == R3D_THREATS[0] else ()):
            code = R3D_CALL.format(limit=R3D_LIMIT, src=str(NEW_SRC), threat=threat, mode=mode, timeout=timeout,
                                   rows=R3D_ROWS)
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  env={**os.environ, **ENV})
            row = {"part": "r3d", "threat": threat, "mode": mode, "timeout_s": timeout, "limit_bytes": R3D_LIMIT,
                   "rc": proc.returncode, "process_s": time.perf_counter() - start}
            if proc.returncode == 0:
                row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            else:
                row["error"] = proc.stderr.strip().splitlines()[-1:]
            emit(row)
            print(f"r3d {threat} {mode}: {row}", file=sys.stderr, flush=True)


# --- tables -------------------------------------------------------------------------------------

def _spread(values) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def _rounds(rows, key, a: str, b: str, field: str):
    """Per round, median per-call CPU time of ``a`` over that of ``b`` (rows with row[field] in (a, b))."""
    by = {}
    for r in rows:
        by.setdefault((key(r), r["rep"]), {})[r[field]] = statistics.median(r["cpu"])
    groups = {}
    for (k, rep), t in sorted(by.items()):
        groups.setdefault(k, []).append(t[a] / t[b])
    return groups


def tables(rows: list[dict]) -> str:
    out = ["# Graph speed and memory (issue 16)\n",
           f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), one torch thread; "
           f"per-call CPU times (ms, median over rounds); ratios: median over interleaved rounds, [min, max] over rounds.\n"]
    graph = [r for r in rows if r["part"] == "graph"]
    if graph:
        key = lambda r: (r["what"], r["size"], r["threat"])  # noqa: E731
        ms = {}
        for r in graph:
            ms.setdefault(key(r) + (r["net"],), []).append(1e3 * statistics.median(r["cpu"]))
        last = {key(r) + (r["net"],): r for r in graph}
        vs_plain, vs_twin = _rounds(graph, key, "graph", "plain", "net"), _rounds(graph, key, "graph", "twin", "net")
        nets = ("graph", "plain", "twin")
        for what, title, extra, cell in (
                ("rows", "the backward pass alone: CROWN bounds of the same neurons of the last ReLU's input "
                         f"({graph[0]['rows']} rows), on each network's IBP bounds", "mean bound width graph / twin",
                 lambda k: f"{last[k + ('graph',)]['mean_width']:.4g} / {last[k + ('twin',)]['mean_width']:.4g}"),
                ("e2e", "whole STBP-CROWN calls (`certify`)", "margin_lb graph / twin | unstable ReLUs graph / plain / twin",
                 lambda k: f"{last[k + ('graph',)]['margin_lb']:.6g} / {last[k + ('twin',)]['margin_lb']:.6g} | "
                           + " / ".join(str(last[k + (n,)]["unstable"]) for n in nets))):
            keys = [k for k in vs_plain if k[0] == what]
            if not keys:
                continue
            cols = 7 + extra.count("|")
            out += [f"## Residual graph vs chains: {title}\n",
                    f"| size | threat | graph ms | plain ms | twin ms | graph / plain | graph / twin | {extra} |",
                    "|" + " --- |" * (cols + 1)]
            for k in keys:
                t = " | ".join(f"{statistics.median(ms[k + (n,)]):.1f}" for n in nets)
                out.append(f"| {k[1]} | `{k[2]}` | {t} | {_spread(vs_plain[k])} | {_spread(vs_twin[k])} | {cell(k)} |")
            out.append("" if what == "rows" else
                       "\n`unstable`: `Certificate.unstable`, counted on the reported (outward-widened by 1e-9) "
                       "boxes, so the twin's copies relu(h), relu(-h) of a non-negative h, whose exact bounds touch 0, "
                       "count as unstable too (on 1x4x10x10 linf: 249 with |bound| > 1e-8, 1803 counted).\n")
    chain = [r for r in rows if r["part"] == "chain"]
    if chain:
        key = lambda r: (r["model"], r["relaxation"], r["threat"])  # noqa: E731
        ratios = _rounds(chain, lambda r: key(r) + (r["index"],), "new", "old", "version")
        per = {}
        for k, v in ratios.items():
            per.setdefault(k[:3], []).extend(v)
        ms = {}
        for r in chain:
            ms.setdefault(key(r) + (r["version"],), []).append(statistics.median(r["cpu"]))
        same = all(r["same_margins"] for r in chain)
        out += ["## Zoo chains: this checkout vs commit 011dddd (STBP, test inputs 0-2)\n",
                f"Margins identical to the old commit on every configuration: {same}. Ratio new / old per round "
                "(all rounds of the 3 inputs pooled).\n",
                "| model | relaxation | threat | old ms | new ms | new / old |", "|" + " --- |" * 6]
        for k, v in per.items():
            out.append(f"| {k[0]} | {k[1]} | `{k[2]}` | {1e3 * statistics.median(ms[k + ('old',)]):.2f} | "
                       f"{1e3 * statistics.median(ms[k + ('new',)]):.2f} | {_spread(v)} |")
        allr = [x for v in per.values() for x in v]
        gm = math.exp(statistics.fmean(math.log(statistics.median(v)) for v in per.values()))
        out += [f"\nAll {len(per)} configurations: median ratio {_spread(allr)}, geometric mean of the medians "
                f"{gm:.3f}; configurations with a median above 1.05: "
                f"{sum(statistics.median(v) > 1.05 for v in per.values())}.\n"]
    r3d = [r for r in rows if r["part"] == "r3d"]
    if r3d:
        out += ["## r3d18_small (3x16x112x112, 1,266,944 ReLUs) under RLIMIT_AS = 4 GiB, one process each\n",
                "`crown-ibp`: STBP with `relaxation=\"crown-ibp\"` (exact first layer, IBP boxes, CROWN on the margins: the "
                "deepest backward pass, dense rows through all 48 nodes); `stbp`: STBP-CROWN (`certify`, CROWN on every "
                "unstable neuron), cut to IBP after the time limit.\n",
                "| threat | mode | exit | CROWN finished | time s | peak RSS MB | margin_lb |", "|" + " --- |" * 7]
        for r in r3d:
            if r.get("mode") == "rows":
                continue
            if r["rc"] == 0:
                done = "yes" if r["completed"] else f"no (cut at {r['timeout_s']:g} s)"
                out.append(f"| `{r['threat']}` | {r['mode']} | 0 | {done} | "
                           f"{r['time_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['margin_lb']:.4g} |")
            else:
                out.append(f"| `{r['threat']}` | {r['mode']} | {r['rc']}: {r['error']} | | | | |")
        for r in (r for r in r3d if r.get("mode") == "rows" and r["rc"] == 0):
            total = sum(p["neurons"] * 2 * p["cpu_per_row_s"] for p in r["per_tensor"])
            out += [f"\nCROWN rows from each tensor STBP-CROWN refines (`{r['threat']}`; CPU per row, "
                    f"{R3D_ROWS} sampled neurons x lower and upper, on IBP bounds; peak RSS {r['peak_rss_mb']:.0f} MB):\n",
                    "| node | neurons | CPU ms / row | all its neurons, CPU s |", "| --- | --- | --- | --- |"]
            out += [f"| {p['node']} | {p['neurons']} | {1e3 * p['cpu_per_row_s']:.2f} | "
                    f"{p['neurons'] * 2 * p['cpu_per_row_s']:.0f} |" for p in r["per_tensor"]]
            out.append(f"| all {len(r['per_tensor'])} | | | {total:.0f} ({total / 3600:.1f} h) |")
        out.append("")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("graph", "chain", "r3d", "all"), default="all")
    ap.add_argument("--old", default="/tmp/old011/src", help="the old commit's src directory (part chain)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rows", type=int, default=128, help="neurons bounded per backward-pass measurement (part graph)")
    ap.add_argument("--r3d-timeout", type=float, default=60.0,
                    help="seconds of STBP-CROWN on r3d18_small before the rest falls back to IBP (0: none; hours)")
    ap.add_argument("--only", nargs="+", metavar="MODEL/RELAXATION/THREAT",
                    help="part chain: measure these configurations again (their rows are replaced), e.g. small/ibp/linf:eps=4/255")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    sys.path.insert(0, str(NEW_SRC))
    os.environ.update(ENV)
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / "graph_bench.jsonl"
    parts = ("graph", "chain", "r3d") if args.part == "all" else (args.part,)
    kept = [json.loads(line) for line in raw.read_text().splitlines()] if raw.exists() else []
    rerun = lambda r: r["part"] in parts and (not args.only or r["part"] != "chain"  # noqa: E731
                                              or _chain_name(r["model"], r["relaxation"], r["threat"]) in args.only)
    rows = [r for r in kept if not rerun(r)]

    def emit(row):
        rows.append(row)

    for part in parts:
        if part == "graph":
            part_graph(args.reps, args.rows, emit)
        elif part == "chain":
            part_chain(args.old, args.reps, args.only, emit)
        else:
            part_r3d(args.r3d_timeout, emit)
        raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
        (RESULTS / "graph_bench.md").write_text(tables(rows))
    print(tables(rows))


if __name__ == "__main__":
    main()
