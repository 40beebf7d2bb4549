"""Benchmark configuration: a TOML file, expanded into instances (model x input x threat x method).

```toml
timeout = 20            # seconds per instance, passed to verify(); the process is killed at timeout + grace
grace = 10
threads = 1             # torch threads per instance process
plugins = []            # modules imported in every instance process (e.g. to register extra methods)

[[models]]
name = "tiny_std"       # a zoo model, on its generated dataset
[[models]]
name = "mine"           # a model file: .onnx, or a .pt state file with arch = "<zoo architecture>"
file = "mine.onnx"      # relative to this file
data = "organmnist3d.npz"   # a zoo dataset name (video, video8, volume) or a MedMNIST-format .npz

[samples]
split = "test"
n = 10
select = "first-correct"    # or "random" (n indices drawn with seed, correctly classified or not)
seed = 0

[[threats]]
kind = "anyframes"          # the default set of this kind for the input shape (default_threat)
eps = ["16/255", "32/255"]
[[threats]]
spec = "patch:eps={eps},t=0-1,y=2,x=2,h=4,w=4"   # or an explicit template
eps = ["8/255"]

[[methods]]
name = "milp-stbp"          # the label in results, tables and figures
method = "milp"             # a verify() method
options = { solver = "scip", bounds = "stbp" }
```
"""
from __future__ import annotations

import importlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import DATASETS, ensure_dataset, load_npz, load_sample
from ..network.load import load_network
from ..threats import KINDS, parse_eps, parse_threat
from ..verify import METHODS
from ..zoo import ARCHITECTURES, pretrained_network
from .store import instance_key

SELECTIONS = ("first-correct", "random")


def default_threat(kind: str, eps: str, shape) -> str:
    """The threat of each kind used for a model: patches of side max(3, H/4) over max(2, T/4) frames, centred."""
    _, t, h, w = shape
    side, span = max(3, h // 4), max(2, t // 4)
    t0, y0 = (t - span) // 2, (h - side) // 2
    return {
        "linf": f"linf:eps={eps}",
        "frames": f"frames:eps={eps},frames={t // 2}",
        "anyframes": f"anyframes:eps={eps},k=1",
        "patch": f"patch:eps={eps},t={t0}-{t0 + span - 1},y={y0},x={y0},h={side},w={side}",
        "anypatch": f"anypatch:eps={eps},len={span},h={side},w={side}",
    }[kind]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    file: str | None = None
    arch: str | None = None
    data: str | None = None  # a zoo dataset name or an .npz path; None: the zoo model's dataset

    def load(self):
        """The model as a Network."""
        if self.file is None:
            return pretrained_network(self.name)
        return load_network(self.file, arch=self.arch)

    def dataset(self) -> str:
        if self.data is not None:
            return self.data
        if self.name not in ARCHITECTURES:
            raise ValueError(f"model {self.name!r}: give data = (a dataset name or an .npz path) for a model file")
        return ARCHITECTURES[self.name].dataset


def data_path(data: str) -> Path:
    """A zoo dataset name (generated on first use) or an .npz path."""
    return ensure_dataset(data) if data in DATASETS else Path(data)


@dataclass(frozen=True)
class ThreatGrid:
    template: str  # with an {eps} placeholder, or "" for the default set of ``kind``
    kind: str
    eps: tuple[str, ...]

    def specs(self, shape) -> list[tuple[str, str]]:
        """(eps text, canonical threat spec) for every eps, checked against the input shape."""
        out = []
        for e in self.eps:
            threat = parse_threat(self.template.format(eps=e) if self.template else default_threat(self.kind, e, shape))
            threat.validate(shape)
            out.append((e, threat.spec()))
        return out


@dataclass(frozen=True)
class MethodSpec:
    label: str
    method: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    text: str  # the TOML as read, copied into the output directory
    models: tuple[ModelSpec, ...]
    threats: tuple[ThreatGrid, ...]
    methods: tuple[MethodSpec, ...]
    split: str = "test"
    n: int = 10
    select: str = "first-correct"
    seed: int = 0
    timeout: float = 60.0
    grace: float = 10.0
    threads: int = 1
    plugins: tuple[str, ...] = ()


@dataclass(eq=False)
class Task:
    """One instance: verify(net, x, label, threat, method, timeout, **options) for one model."""

    model: str
    model_file: str | None
    arch: str | None
    data: str
    split: str
    index: int
    label: int
    kind: str
    eps: str
    threat: str
    method: str  # the label
    call: dict  # {"method": verify() method, "options": {...}, "timeout": s}
    grace: float
    threads: int
    plugins: tuple[str, ...]
    x: np.ndarray

    def record(self) -> dict:
        """The instance fields of a results line."""
        return {k: getattr(self, k) for k in ("model", "model_file", "arch", "data", "split", "index", "label", "kind",
                                              "eps", "threat", "method", "call")}

    @property
    def key(self) -> str:
        return instance_key(self.record())


KEYS = {"": {"timeout", "grace", "threads", "plugins", "models", "samples", "threats", "methods",
             "audit"},  # [audit]: read by stverify audit (audit/audit.py), ignored by bench
        "models": {"name", "file", "arch", "data"}, "samples": {"split", "n", "select", "seed"},
        "threats": {"kind", "spec", "eps"}, "methods": {"name", "method", "options"}}


def _need(table: dict, key: str, where: str):
    if key not in table:
        raise ValueError(f"{where}: missing {key!r}")
    return table[key]


def _check_keys(raw: dict, path) -> None:
    """Refuse misspelt keys rather than silently using defaults."""
    tables = [("", raw), ("samples", raw.get("samples", {}))]
    tables += [(k, t) for k in ("models", "threats", "methods") for t in raw.get(k, [])]
    for section, table in tables:
        if unknown := table.keys() - KEYS[section]:
            raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} in {section or 'the top level'}; "
                             f"known: {', '.join(sorted(KEYS[section]))}")


def load_config(path, data: str | None = None) -> Config:
    """Parse a benchmark config; ``data`` (an .npz) replaces the data of every model whose input shape matches."""
    path = Path(path)
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: {e}") from None
    _check_keys(raw, path)
    base = path.resolve().parent

    def rel(p):
        return None if p is None else str(p if Path(p).is_absolute() else Path(base, p))

    models = []
    for i, m in enumerate(raw.get("models", [])):
        d = m.get("data")
        models.append(ModelSpec(_need(m, "name", f"{path}: models[{i}]"), rel(m.get("file")), m.get("arch"),
                                d if d is None or d in DATASETS else rel(d)))
    threats = []
    for i, t in enumerate(raw.get("threats", [])):
        where = f"{path}: threats[{i}]"
        template = t.get("spec", "")
        kind = template.partition(":")[0].strip().lower() if template else _need(t, "kind", where)
        if kind not in KINDS or (template and "{eps}" not in template):
            raise ValueError(f"{where}: give kind (one of {', '.join(KINDS)}) or spec (a threat with an {{eps}} placeholder)")
        eps = tuple(str(e) for e in _need(t, "eps", where))
        for e in eps:
            parse_eps(e)
        threats.append(ThreatGrid(template, kind, eps))
    methods = tuple(MethodSpec(_need(m, "name", f"{path}: methods[{i}]"), _need(m, "method", f"{path}: methods[{i}]"),
                               dict(m.get("options", {}))) for i, m in enumerate(raw.get("methods", [])))
    for what, items in (("models", models), ("threats", threats), ("methods", methods)):
        if not items:
            raise ValueError(f"{path}: no [[{what}]] given")
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{path}: method names must be unique, got {labels}")
    samples = raw.get("samples", {})
    cfg = Config(text, tuple(models), tuple(threats), methods, samples.get("split", "test"), int(samples.get("n", 10)),
                 samples.get("select", "first-correct"), int(samples.get("seed", 0)), float(raw.get("timeout", 60.0)),
                 float(raw.get("grace", 10.0)), int(raw.get("threads", 1)), tuple(raw.get("plugins", ())))
    if cfg.select not in SELECTIONS:
        raise ValueError(f"{path}: samples.select must be one of {', '.join(SELECTIONS)}, got {cfg.select!r}")
    return cfg if data is None else _override_data(cfg, data)


def _override_data(cfg: Config, data: str) -> Config:
    shape = load_sample(data_path(data), cfg.split, 0)[0].shape
    models = tuple(ModelSpec(m.name, m.file, m.arch, data) if m.load().input_shape == shape else m for m in cfg.models)
    if models == cfg.models:
        raise ValueError(f"--data {data}: inputs of shape {shape} match no model of the config "
                         f"({', '.join(f'{m.name} {m.load().input_shape}' for m in cfg.models)})")
    return Config(**{**cfg.__dict__, "models": models, "text": cfg.text + f"\n# command line: --data {data}\n"})


def select(net, X: np.ndarray, Y: np.ndarray, n: int, how: str, seed: int) -> list[int]:
    """Indices of the inputs to verify: the first n correctly classified, or n drawn at random."""
    if how == "random":
        return sorted(np.random.default_rng(seed).choice(len(Y), size=min(n, len(Y)), replace=False).tolist())
    picks = []
    for start in range(0, len(Y), 256):
        pred = net.predict(X[start:start + 256])
        picks += [start + i for i in np.flatnonzero(pred == Y[start:start + 256])]
        if len(picks) >= n:
            break
    return picks[:n]


def expand(cfg: Config) -> tuple[list[Task], dict]:
    """The instances of a config, and the networks by model name (after importing the plugins, so that
    unknown methods fail here rather than in every instance)."""
    for module in cfg.plugins:
        importlib.import_module(module)
    if unknown := {m.method for m in cfg.methods} - METHODS.keys():
        raise ValueError(f"unknown method(s) {', '.join(sorted(unknown))}; available: {', '.join(METHODS)}")
    tasks, nets = [], {}
    for m in cfg.models:
        net = nets[m.name] = m.load()
        data = m.dataset()
        X, Y = load_npz(data_path(data), cfg.split)
        if X.shape[1:] != net.input_shape:
            raise ValueError(f"model {m.name}: input shape {net.input_shape}, but {data} holds inputs of shape {X.shape[1:]}")
        if Y.max() >= net.n_classes:
            raise ValueError(f"model {m.name} has {net.n_classes} classes, but {data} has labels up to {Y.max()}: "
                             "use a model trained on this data")
        picks = select(net, X, Y, cfg.n, cfg.select, cfg.seed)
        for grid in cfg.threats:
            for eps, spec in grid.specs(net.input_shape):
                for i in picks:
                    for meth in cfg.methods:
                        tasks.append(Task(m.name, m.file, m.arch, data, cfg.split, int(i), int(Y[i]), grid.kind, eps, spec,
                                          meth.label, {"method": meth.method, "options": meth.options, "timeout": cfg.timeout},
                                          cfg.grace, cfg.threads, cfg.plugins, X[i]))
    return tasks, nets
