"""``audit()``: claims (stverify's incomplete methods, another tool's bounds or verdicts) against exact answers.

The instances are those of a bench TOML config (``bench.config``: models, samples, threats; its
``[[methods]]`` are the incomplete methods whose claims are audited: ``box-ibp``, ``box-crown``,
``stbp`` with a ``relaxation``), and / or those of a ``stverify export`` manifest.  An optional
``[audit]`` table in the config sets (defaults in ``AuditOptions``)::

    [audit]
    layers = "nonlinear"     # the inputs of every ReLU / MaxPool and the logits; or a list of layer indices
    neurons = 64             # at most this many neurons per layer (drawn with seed), or "all",
                             # or per model: { tiny = "all", medmnist = 8 } (a missing model: "all")
    seed = 0
    exact = "milp"           # the exact verdict: verify(method=...) with exact_options, timeout = the config's
    exact_options = {}
    bounds = "stbp"          # big-M of the exact bounds: "stbp" or "lp"
    progressive = true       # bound every unstable ReLU input before the audited layers exactly first (exact_bounds)
    bounds_timeout = 300     # s per instance for the exact bounds of all its layers, end to end
    tol = 1e-6               # a bound claim is unsound beyond tol * max(1, |exact value|)
    bounds_files = { mytool = "mytool_bounds.json" }   # another tool's bounds (claims.py), relative to the config
    results = { mytool = "mytool_results.csv" }        # another tool's VNN-COMP results
    manifest = "export/"     # the export those results (and vnnlib-keyed bounds) refer to

For every instance the exact answers (``exact_layer_bounds`` of the selected neurons, the exact
verdict and its counterexample) and stverify's own claims are appended to ``OUT/results.jsonl`` as
they finish (``bench.store``; ``resume=True`` skips finished instances).  Claims from files are read
when the report is written (``report.write_report``), so more of them can be audited later against
the same exact answers.
"""
from __future__ import annotations

import math
import socket
import time
import tomllib
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..bench.config import ModelSpec, expand, load_config
from ..data import data_path
from ..bench.store import Store
from ..data import load_sample
from .. import validation
from ..errors import InputError
from ..interchange import manifest as mf
from ..network.layers import NONLINEAR
from ..threats import DEFAULT_DOMAIN, format_eps, parse_threat
from ..verify import check_call, verify
from .claims import Key, check_own_method, load_external, own_claim
from .exact_bounds import SOURCES as BOUND_SOURCES, exact_layer_bounds
from .report import write_report
from .sources import DEFAULT_TOL, write_sources


@dataclass
class AuditOptions:
    layers: str | list = "nonlinear"
    neurons: int | str | dict = "all"
    seed: int = 0
    exact: str = "milp"
    exact_options: dict = field(default_factory=dict)
    bounds: str = "stbp"
    progressive: bool = True
    bounds_timeout: float = 300.0
    tol: float = DEFAULT_TOL
    bounds_files: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    manifest: str | None = None

    def check(self, insts: list, nets: dict, timeout: float, workers) -> None:
        """Refuse a bad option before anything is written: the audited methods, the neurons and layers of
        every model, the exact method and its options on every instance, the big-M source, the limits."""
        validation.integer(workers, "workers", lo=1)
        validation.timeout(self.bounds_timeout, "[audit] bounds_timeout")
        validation.number(self.tol, "[audit] tol", lo=0.0)
        validation.integer(self.seed, "[audit] seed", lo=0)
        if self.bounds not in BOUND_SOURCES:
            raise InputError(f"[audit] bounds: expected one of {', '.join(BOUND_SOURCES)}, got {self.bounds!r}")
        for inst in insts:
            net = nets[inst.key.model]
            for m in inst.methods:
                check_own_method(m.label, m.method)
            self.neurons_for(inst.key.model)
            audited_layers(net, self.layers)
            check_call(net, inst.x, inst.label, inst.key.threat, self.exact, timeout, DEFAULT_DOMAIN, self.exact_options)

    def neurons_for(self, model: str):
        n = self.neurons.get(model, "all") if isinstance(self.neurons, dict) else self.neurons
        if n != "all" and not (isinstance(n, int) and n > 0):
            raise InputError(f"[audit] neurons: expected a positive integer or \"all\", got {n!r}")
        return n


@dataclass
class Instance:
    key: Key
    spec: ModelSpec
    data: str
    label: int
    kind: str
    eps: str
    x: np.ndarray
    methods: tuple = ()  # bench MethodSpecs whose claims are audited here

    def record(self) -> dict:
        return {"model": self.key.model, "model_file": self.spec.file, "arch": self.spec.arch, "data": self.data,
                "split": self.key.split, "index": self.key.index, "label": self.label, "kind": self.kind,
                "eps": self.eps, "threat": self.key.threat, "method": "audit"}


def read_options(config_path) -> AuditOptions:
    """The ``[audit]`` table of a config (paths made relative to the config's folder)."""
    path = Path(config_path)
    raw = tomllib.loads(path.read_text()).get("audit", {})
    known = {f.name for f in fields(AuditOptions)}
    if unknown := raw.keys() - known:
        raise InputError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} in [audit]; known: {', '.join(sorted(known))}")
    opts = AuditOptions(**raw)
    base = path.resolve().parent
    rel = lambda p: str(p if Path(p).is_absolute() else base / p)  # noqa: E731
    opts.bounds_files = {k: rel(v) for k, v in opts.bounds_files.items()}
    opts.results = {k: rel(v) for k, v in opts.results.items()}
    opts.manifest = rel(opts.manifest) if opts.manifest else None
    return opts


def config_instances(config_path) -> tuple[list[Instance], dict]:
    """The instances of a bench config (one per model x input x threat) and the networks by model name."""
    cfg = load_config(config_path)
    tasks, nets = expand(cfg)
    out: dict = {}
    for t in tasks:
        key = Key.of(t)
        if key not in out:
            out[key] = Instance(key, ModelSpec(t.model, t.model_file, t.arch, t.data), t.data, t.label, t.kind, t.eps, t.x,
                                cfg.methods)
    return list(out.values()), nets


def manifest_instances(manifest_path, nets: dict) -> list[Instance]:
    """The instances an export manifest names (models loaded into ``nets`` as needed)."""
    out: dict = {}
    for e in mf.read_manifest(manifest_path):
        key = Key.of(e)
        if key in out:
            continue
        spec = ModelSpec(e.model, e.model_file, e.arch, e.data)
        if e.model not in nets:
            nets[e.model] = spec.load()
        x, _ = load_sample(data_path(e.data), e.split, e.index)
        threat = parse_threat(e.threat)
        out[key] = Instance(key, spec, e.data, e.label, threat.kind, format_eps(threat.eps), x)
    return list(out.values())


def audited_layers(net, layers) -> list[int]:
    """Tensors whose bounds are audited: ``"nonlinear"`` = every tensor a ReLU or MaxPool reads (but
    the input itself), and the outputs; or the given indices (in a chain: layer inputs)."""
    if layers == "nonlinear":
        read = {net.sources[i][0] for i, layer in enumerate(net.layers) if isinstance(layer, NONLINEAR)}
        return sorted(read - {0}) + [len(net.layers)]
    bad = [i for i in layers if not (isinstance(i, int) and 1 <= i <= len(net.layers))]
    if bad:
        raise InputError(f"[audit] layers: {bad} are not tensors of the network "
                         f"(expected integers in 1..{len(net.layers)}, or \"nonlinear\")")
    return sorted(set(layers))


def layer_name(net, i: int) -> str:
    """A short name of tensor i: the nodes it runs between, e.g. ``Conv3d>ReLU``, or ``logits``."""
    if i == len(net.layers):
        return "logits"
    readers = "/".join(dict.fromkeys(type(net.layers[j]).__name__ for j in net.consumers[i]))
    return f"{type(net.layers[i - 1]).__name__}>{readers}"


def select_neurons(net, layer: int, n, seed: int) -> np.ndarray:
    """All entries of the input of ``layer``, or n of them drawn with (seed, layer)."""
    size = int(np.prod(net.shapes[layer]))
    if n == "all" or n >= size:
        return np.arange(size)
    return np.sort(np.random.default_rng([seed, layer]).choice(size, n, replace=False))


def external_layers(opts: AuditOptions, insts: list[Instance], nets: dict) -> dict[Key, set[int]]:
    """Per instance, the layers that bounds files claim (so that their exact bounds are computed too).
    Every claim file, results files included, is read here: a bad one is refused before the audit runs."""
    if not opts.bounds_files and not opts.results:
        return {}
    sources = {"bounds_files": opts.bounds_files, "results": opts.results, "manifest": opts.manifest}
    claims, _ = load_external(sources, {i.key: nets[i.key.model] for i in insts}, {i.key: i.spec.file for i in insts})
    out = {}
    for key, cs in claims.items():
        net = nets[key.model]
        out[key] = {i for c in cs for i in c.bounds if 1 <= i <= len(net.layers)}
    return out


def _finite(v):
    """JSON-safe: non-finite floats as strings (read back by float() / np.asarray(dtype=float))."""
    if isinstance(v, dict):
        return {str(k): _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_finite(x) for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else str(float(v))
    if isinstance(v, np.integer):
        return int(v)
    return v


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def audit_instance(inst: Instance, net, opts: AuditOptions, timeout: float, workers: int = 1, extra_layers=()) -> tuple[dict, np.ndarray | None]:
    """Exact answers and stverify's own claims for one instance: (results line, exact counterexample)."""
    started = _now()
    threat = parse_threat(inst.key.threat)
    layers = sorted(set(audited_layers(net, opts.layers)) | set(extra_layers))
    neurons = {i: select_neurons(net, i, opts.neurons_for(inst.key.model), opts.seed) for i in layers}
    t0 = time.perf_counter()
    ebs = exact_layer_bounds(net, inst.x, threat, neurons, timeout=opts.bounds_timeout, workers=workers, bounds=opts.bounds,
                             progressive=opts.progressive)
    bounds_s = time.perf_counter() - t0
    res = verify(net, inst.x, inst.label, threat, method=opts.exact, timeout=timeout, **opts.exact_options)
    exact = {str(i): {"neurons": neurons[i], **{k: getattr(eb, k).reshape(-1)[neurons[i]] for k in
                                               ("lo", "hi", "lo_attained", "hi_attained", "status", "how_lo", "how_hi",
                                                "neuron_s")}} for i, eb in ebs.items()}
    claims = {}
    for m in inst.methods:
        c = own_claim(m.label, m.method, m.options, net, inst.x, inst.label, threat, DEFAULT_DOMAIN)
        claims[m.label] = {"kind": c.kind, "verdict": c.verdict, "time_s": c.time_s,
                           "bounds": {str(i): {"lo": c.bounds[i][0][neurons[i]], "hi": c.bounds[i][1][neurons[i]]}
                                      for i in layers}}
    record = {**inst.record(), "layers": {str(i): layer_name(net, i) for i in layers},
              "n_layers": len(net.layers), "exact_bounds": exact, "exact_bounds_s": bounds_s,
              "verdict": {"method": opts.exact, "status": res.status, "time_s": res.time_s, "margin_lb": res.margin_lb,
                          "margin_ub": res.margin_ub, "message": res.message},
              "claims": claims, "host": socket.gethostname(), "started": started, "finished": _now()}
    return _finite(record), res.counterexample


def audit(config=None, out=None, *, bounds_files: dict | None = None, results: dict | None = None, manifest=None,
          workers: int = 1, resume: bool = False, console: Console | None = None) -> dict:
    """Run an audit (module docstring) into ``out`` and write its report; returns what the report found.

    ``bounds_files`` / ``results`` ({tool: path}) and ``manifest`` add to (and override) the
    config's ``[audit]`` table; without a config the instances are the manifest's."""
    if out is None:
        raise InputError("audit: give an output directory (out=)")
    console = console or Console(stderr=True, soft_wrap=True)
    opts = read_options(config) if config is not None else AuditOptions()
    opts.bounds_files.update({k: str(Path(v).resolve()) for k, v in (bounds_files or {}).items()})
    opts.results.update({k: str(Path(v).resolve()) for k, v in (results or {}).items()})
    if manifest is not None:
        opts.manifest = str(Path(manifest).resolve())
    if config is None and opts.manifest is None:
        raise InputError("audit: give a config (its models, samples and threats are the instances) or a manifest")
    if opts.results and opts.manifest is None:
        raise InputError("audit: VNN-COMP results name VNN-LIB files; give the manifest of the export they ran on")
    timeout = load_config(config).timeout if config is not None else 60.0
    insts, nets = config_instances(config) if config is not None else ([], {})
    if opts.manifest is not None:
        known = {i.key for i in insts}
        insts += [i for i in manifest_instances(opts.manifest, nets) if i.key not in known]
    if not resume and (Path(out) / "results.jsonl").exists():
        raise InputError(f"{out} already holds audit results; pass --resume to continue that audit (or to audit more "
                         "claims against its exact answers), or choose another --out")
    opts.check(insts, nets, timeout, workers)  # before anything is written
    extra = external_layers(opts, insts, nets)
    store = Store(out, resume)
    if config is not None:  # kept by name: several configs may add instances to one audit
        (Path(out) / Path(config).name).write_text(Path(config).read_text())
    write_sources(out, opts.bounds_files, opts.results, opts.manifest, opts.tol)
    todo = [i for i in insts if "|".join(map(str, (*i.key, "audit"))) not in store.keys]
    console.print(f"{len(insts)} instances ({len(insts) - len(todo)} already done), claims of "
                  f"{', '.join(dict.fromkeys([m.label for m in (insts[0].methods if insts else ())] + list(opts.bounds_files) + list(opts.results))) or 'none'}; "
                  f"results in {store.path}")
    progress = Progress(TextColumn("audit"), BarColumn(bar_width=24), MofNCompleteColumn(), TextColumn("{task.fields[now]}"),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                        disable=not console.is_terminal)
    bar = progress.add_task("audit", total=len(insts), completed=len(insts) - len(todo), now="")
    with progress:
        for k, inst in enumerate(todo, len(insts) - len(todo) + 1):
            progress.update(bar, now=f"{inst.key.model} #{inst.key.index} {inst.key.threat}")
            record, cex = audit_instance(inst, nets[inst.key.model], opts, timeout, workers, extra.get(inst.key, ()))
            store.append(record, cex)
            progress.update(bar, advance=1)
            if not console.is_terminal:
                console.print(f"{k}/{len(insts)} {inst.key.model} #{inst.key.index} {inst.key.threat}: "
                              f"exact {record['verdict']['status']}, bounds {record['exact_bounds_s']:.1f} s", highlight=False)
    return write_report(out)
