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
data = "organmnist3d.npz"   # a dataset name (video, video8, volume, driving, driving2, action) or an .npz
[[models]]
name = "steering"
property = "deviation:delta=0.05"   # an output property instead of the label (properties' grammar); a
                                    # regression dataset (float targets) needs one

[samples]
split = "test"
n = 10
select = "first-correct"    # or "random" (n indices drawn with seed, correctly classified or not)
seed = 0

[[threats]]
kind = "anyframes"          # the default set of this kind for the input shape (default_threat)
eps = ["16/255", "32/255"]
[[threats]]
spec = "patch:eps={eps},t=0-1,y=2,x=2,h=4,w=4"   # or an explicit template, reported under its own kind
eps = ["8/255"]                                  # or under kind = "..." given beside it

[[methods]]
name = "milp-stbp"          # the label in results, tables and figures
method = "milp"             # a verify() method
options = { solver = "scip", bounds = "stbp" }
```
Every field is checked when the file is read (types, ranges such as ``threads >= 1``, ``n >= 1``,
``timeout > 0``; options a method does not take); a bad one is an ``InputError`` naming the field.
"""
from __future__ import annotations

import importlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import validation
from ..data import DATASETS, SPLITS, read_split
from ..errors import InputError
from ..network.load import load_network
from ..properties import parse_property
from ..threats import KINDS, parse_eps, parse_threat
from ..verify import METHODS, refused_options
from ..zoo import ARCHITECTURES, dataset_of, pretrained_network
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
    prop: str | None = None  # an output property (canonical spec) instead of the label's robustness

    def load(self):
        """The model as a Network."""
        if self.file is None:
            return pretrained_network(self.name)
        return load_network(self.file, arch=self.arch)

    def dataset(self) -> str:
        if self.data is not None:
            return self.data
        if self.name not in ARCHITECTURES:
            raise InputError(f"model {self.name!r}: give data = (a dataset name or an .npz path) for a model file")
        return dataset_of(self.name)


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
    """One instance: verify(net, x, label or property, threat, method, timeout, **options) for one model."""

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
    prop: str | None = None  # an output property's spec; None: the robustness of ``label``

    def record(self) -> dict:
        """The instance fields of a results line."""
        return {**{k: getattr(self, k) for k in ("model", "model_file", "arch", "data", "split", "index", "label", "kind",
                                                 "eps", "threat", "method", "call")}, "property": self.prop}

    def target(self, net):
        """What verify() checks: the label, or the property bound to this instance."""
        if self.prop is None:
            return self.label
        return parse_property(self.prop).bind(net, self.x, None if self.label < 0 else self.label)

    @property
    def key(self) -> str:
        return instance_key(self.record())


KEYS = {"": {"timeout", "grace", "threads", "plugins", "models", "samples", "threats", "methods",
             "audit"},  # [audit]: read by stverify audit (audit/audit.py), ignored by bench
        "models": {"name", "file", "arch", "data", "property"}, "samples": {"split", "n", "select", "seed"},
        "threats": {"kind", "spec", "eps"}, "methods": {"name", "method", "options"}}
MAX_THREADS = 1024


def _need(table: dict, key: str, where: str):
    if key not in table:
        raise InputError(f"{where}: missing {key!r}")
    return table[key]


def _text(table: dict, key: str, where: str, required: bool = False) -> str | None:
    """A non-empty string field (None when absent and not required)."""
    v = _need(table, key, where) if required else table.get(key)
    if v is not None and not (isinstance(v, str) and v.strip()):
        raise InputError(f"{where}: {key} must be a non-empty string, got {v!r}")
    return v


def _tables(raw: dict, key: str, path) -> list[dict]:
    """An array of tables ([[key]]), checked to be one."""
    v = raw.get(key, [])
    if not (isinstance(v, list) and all(isinstance(t, dict) for t in v)):
        raise InputError(f"{path}: {key} must be an array of tables ([[{key}]]), got {type(v).__name__}")
    return v


def _check_keys(raw: dict, path) -> None:
    """Refuse misspelt keys rather than silently using defaults."""
    if not isinstance(raw.get("samples", {}), dict):
        raise InputError(f"{path}: samples must be a table ([samples])")
    tables = [("", raw), ("samples", raw.get("samples", {}))]
    tables += [(k, t) for k in ("models", "threats", "methods") for t in _tables(raw, k, path)]
    for section, table in tables:
        if unknown := table.keys() - KEYS[section]:
            raise InputError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} in {section or 'the top level'}; "
                             f"known: {', '.join(sorted(KEYS[section]))}")


def load_config(path, data: str | None = None) -> Config:
    """Parse a benchmark config, every field checked (type, range); ``data`` (an .npz) replaces the
    data of every model whose input shape matches.  InputError naming the file and field otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file {str(path)!r} {'is a directory' if path.is_dir() else 'not found'}")
    try:
        text = path.read_text()
        raw = tomllib.loads(text)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text (TOML) file") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: {e}") from None
    _check_keys(raw, path)
    base = path.resolve().parent

    def rel(p):
        return None if p is None else str(p if Path(p).is_absolute() else Path(base, p))

    models = []
    for i, m in enumerate(raw.get("models", [])):
        where = f"{path}: models[{i}]"
        d, prop = _text(m, "data", where), _text(m, "property", where)
        if prop is not None:
            try:
                prop = parse_property(prop).spec()
            except InputError as e:
                raise InputError(f"{where}: property: {e}") from None
        models.append(ModelSpec(_text(m, "name", where, True), rel(_text(m, "file", where)), _text(m, "arch", where),
                                d if d is None or d in DATASETS else rel(d), prop))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: model names must be unique, got {names}")
    threats = []
    for i, t in enumerate(raw.get("threats", [])):
        where = f"{path}: threats[{i}]"
        template = _text(t, "spec", where) or ""
        kind = _text(t, "kind", where, not template) or template.partition(":")[0].strip().lower()
        if kind not in KINDS or (template and "{eps}" not in template):
            raise InputError(f"{where}: give kind (one of {', '.join(KINDS)}) or spec (a threat with an {{eps}} placeholder)")
        eps = _need(t, "eps", where)
        if not (isinstance(eps, list) and eps and all(isinstance(e, (str, int, float)) and not isinstance(e, bool) for e in eps)):
            raise InputError(f"{where}: eps must be a non-empty list of values such as [\"2/255\", 0.01], got {eps!r}")
        eps = tuple(str(e) for e in eps)
        for e in eps:
            try:
                parse_eps(e)
            except InputError as err:
                raise InputError(f"{where}: {err}") from None
        threats.append(ThreatGrid(template, kind, eps))
    methods = []
    for i, m in enumerate(raw.get("methods", [])):
        where = f"{path}: methods[{i}]"
        options = m.get("options", {})
        if not isinstance(options, dict):
            raise InputError(f"{where}: options must be a table such as {{ solver = \"scip\" }}, got {options!r}")
        methods.append(MethodSpec(_text(m, "name", where, True), _text(m, "method", where, True), dict(options)))
    for what, items in (("models", models), ("threats", threats), ("methods", methods)):
        if not items:
            raise InputError(f"{path}: no [[{what}]] given")
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels):
        raise InputError(f"{path}: method names must be unique, got {labels}")
    samples = raw.get("samples", {})
    plugins = raw.get("plugins", [])
    if not (isinstance(plugins, list) and all(isinstance(p, str) for p in plugins)):
        raise InputError(f"{path}: plugins must be a list of module names, got {plugins!r}")
    split = samples.get("split", "test")
    if split not in SPLITS:
        raise InputError(f"{path}: samples.split must be one of {', '.join(SPLITS)}, got {split!r}")
    select = samples.get("select", "first-correct")
    if select not in SELECTIONS:
        raise InputError(f"{path}: samples.select must be one of {', '.join(SELECTIONS)}, got {select!r}")
    cfg = Config(text, tuple(models), tuple(threats), tuple(methods), split,
                 validation.integer(samples.get("n", 10), f"{path}: samples.n", lo=1), select,
                 validation.integer(samples.get("seed", 0), f"{path}: samples.seed", lo=0),
                 validation.number(raw.get("timeout", 60.0), f"{path}: timeout", positive=True),
                 validation.number(raw.get("grace", 10.0), f"{path}: grace", lo=0.0),
                 validation.integer(raw.get("threads", 1), f"{path}: threads", lo=1, hi=MAX_THREADS), tuple(plugins))
    return cfg if data is None else _override_data(cfg, data)


def _override_data(cfg: Config, data: str) -> Config:
    """``data`` for every model whose input shape it fits (its layout read for that shape)."""
    why = {}
    for m in cfg.models:
        try:
            read_split(data, cfg.split, input_shape=m.load().input_shape)
        except InputError as e:
            why[m.name] = str(e)
    models = tuple(ModelSpec(m.name, m.file, m.arch, data, m.prop) if m.name not in why else m for m in cfg.models)
    if models == cfg.models:
        raise InputError(f"--data {data} fits no model of the config: " + "; ".join(f"{k}: {v}" for k, v in why.items()))
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
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise InputError(f"plugins: cannot import {module!r} ({e})") from None
    if unknown := {m.method for m in cfg.methods} - METHODS.keys():
        raise InputError(f"unknown method(s) {', '.join(sorted(unknown))}; available: {', '.join(METHODS)}")
    for m in cfg.methods:
        if extra := refused_options(m.method, m.options):
            raise InputError(f"method {m.label!r}: option(s) {', '.join(extra)} do not apply to {m.method!r}")
    tasks, nets = [], {}
    for m in cfg.models:
        net = nets[m.name] = m.load()
        data = m.dataset()
        try:
            split = read_split(data, cfg.split, input_shape=net.input_shape)
        except InputError as e:
            raise InputError(f"model {m.name}: {e}") from None
        prop = None if m.prop is None else parse_property(m.prop)
        regression = split.task != "classification"
        if regression and (prop is None or prop.needs_label):
            raise InputError(f"model {m.name}: {data} holds regression targets, not class labels: give the model an "
                             "output property (property = \"deviation:delta=0.05\")")
        X, Y = split.inputs(), (np.full(len(split.labels), -1) if regression else split.labels)
        if len(Y) and Y.max() >= net.n_classes:
            raise InputError(f"model {m.name} has {net.n_classes} classes, but {data} has labels up to {Y.max()}: "
                             "use a model trained on this data")
        if regression and cfg.select == "first-correct":  # no class to get right: the first n
            picks = list(range(min(cfg.n, len(Y))))
        else:
            picks = select(net, X, Y, cfg.n, cfg.select, cfg.seed)
        for grid in cfg.threats:
            for eps, spec in grid.specs(net.input_shape):
                for i in picks:
                    for meth in cfg.methods:
                        tasks.append(Task(m.name, m.file, m.arch, data, cfg.split, int(i), int(Y[i]), grid.kind, eps, spec,
                                          meth.label, {"method": meth.method, "options": meth.options, "timeout": cfg.timeout},
                                          cfg.grace, cfg.threads, cfg.plugins, X[i], m.prop))
    return tasks, nets
