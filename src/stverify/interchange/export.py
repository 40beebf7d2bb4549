"""``stverify export``: stverify instances as a VNN-COMP benchmark folder, for other verifiers.

    DIR/onnx/<model>.onnx           the Conv3d model (``onnx_writer``), with ``--rewrite R`` also
                                    <model>.<R>.onnx (``rewrite``: Conv2d or Gemm form, same inputs)
    DIR/vnnlib/<instance>.vnnlib    one property per instance: a union threat (anyframes, anypatch) is
                                    one disjunctive file; ``--split-members`` writes one file per member
                                    box instead (<instance>_m<k>.vnnlib), stated as a frames / patch threat
    DIR/instances.csv               onnx,vnnlib,timeout: the rows other tools run (the rewrite's ONNX
                                    when ``--rewrite`` is given, else the Conv3d model)
    DIR/manifest.json               the stverify instance behind every file, and the native model of
                                    every rewrite (``manifest``)
    DIR/README.md                   what the files are, and which tools can run them as written

Every ONNX file is run with onnxruntime before the export finishes: the Conv3d model against the
float64 reference on the instances' inputs and points sampled from their threat sets, and a rewrite
against the Conv3d model on the same points; the largest differences are reported.

The folder is written whole or not at all: into a temporary folder beside DIR, moved to DIR at the
end (DIR must not exist, or be empty); on a refusal or an error nothing is left behind.

Disjunctive files and tools (``manifest.TOOLS_NOTE``, also in the README and the manifest): alpha-beta-CROWN
reads a union's one disjunctive file and prefers it; Marabou is far slower on them than on their
member files (7-10x on tiny_std; timeouts on larger models where the member files took 1.7-6.2 s
each), so export for Marabou with ``--split-members``.
"""
from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..bench.config import ModelSpec, expand, load_config
from ..data import DATASETS, read_split
from .. import validation
from ..errors import InputError
from ..network import Network
from ..properties import OutputSpec, parse_property
from ..threats import DEFAULT_DOMAIN, AnyFrames, AnyPatch, member_threats, parse_threat
from ..zoo import ARCHITECTURES
from . import vnncomp
from .manifest import TOOLS_NOTE, ExportedInstance, Rewrite, sha256, write_manifest
from .onnx_writer import float32_rounding, network_to_onnx, run_onnx
from .rewrite import rewrite as rewrite_network
from .vnnlib import write_vnnlib

MAX_MEMBER_FILES = 1000  # per instance, with --split-members
CHECK_SAMPLES = 3  # points sampled from each instance's threat set for the onnxruntime checks
CHECK_MAX_POINTS = 64  # per model
REWRITE_TOL_REL = 1e-5  # a rewrite must match the Conv3d model to this times max(1, |logits|) (float32 noise)


@dataclass(frozen=True, eq=False)
class Item:
    """One stverify instance: a model, an input of a dataset, the label or output property to verify, a threat set."""

    model: str
    model_file: str | None
    arch: str | None
    data: str
    split: str
    index: int
    label: int  # -1: none (an output property that needs no label)
    threat: str  # canonical spec
    x: np.ndarray
    prop: str | None = None  # an output property's canonical spec; None: the robustness of ``label``

    @property
    def key(self) -> tuple:
        return self.model, self.split, self.index, self.threat, self.prop

    def output(self, net):
        """The unsafe set a VNN-LIB file of this instance states: the label's, or the property's."""
        if self.prop is None:
            return OutputSpec.robustness(self.label, net.n_classes)
        return parse_property(self.prop).bind(net, self.x, None if self.label < 0 else self.label)


def model_spec(model: str, arch: str | None = None, data: str | None = None) -> ModelSpec:
    """A zoo model name or a model file (named by its stem); the data defaults to the zoo model's dataset."""
    if model in ARCHITECTURES:
        return ModelSpec(model, data=data)
    if not Path(model).is_file():
        raise InputError(f"--model {model!r} is neither a zoo model ({', '.join(ARCHITECTURES)}) nor an existing file")
    if data is None:
        raise InputError("--data is required with a model file (a MedMNIST-format .npz or a zoo dataset name)")
    return ModelSpec(Path(model).stem, str(Path(model).resolve()), arch, data)


def items_from_args(spec: ModelSpec, split: str, indices, threats, label: int | None = None, layout: str | None = None,
                    domain=None, prop: str | None = None) -> tuple[list[Item], dict]:
    """The instances (every index x every threat) of one model, and {model name: Network}; the data read
    with ``layout`` and checked against ``domain`` (``data.read_split``); ``prop``: an output property
    (``properties`` grammar) instead of the label's robustness."""
    net = spec.load()
    data = spec.dataset()
    data = data if data in DATASETS else str(Path(data).resolve())  # a zoo dataset name, or an .npz path
    items = []
    inputs = read_split(data, split, layout=layout, input_shape=net.input_shape, domain=domain)
    prop = None if prop is None else parse_property(prop)
    for index in indices:
        x, y = inputs.sample(index)
        if prop is None or prop.needs_label:
            y = validation.chosen_label(label, y, net.n_classes, f"{data!r} [{split} #{index}]")
        else:
            y = -1 if label is None else validation.label(label, net.n_classes, "--label")
        if prop is not None:
            validation.output_property(net, x, prop.bind(net, x, None if y < 0 else y))  # it fits the model
        for text in threats:
            threat = parse_threat(text)
            threat.validate(x.shape)
            items.append(Item(spec.name, spec.file, spec.arch, data, split, int(index), y, threat.spec(), x,
                              None if prop is None else prop.spec()))
    return items, {spec.name: net}


def items_from_config(path, data: str | None = None) -> tuple[list[Item], dict, float]:
    """The instances of a bench TOML config (its methods aside), the networks, and its timeout."""
    cfg = load_config(path, data)
    tasks, nets = expand(cfg)
    items = {}
    for t in tasks:
        item = Item(t.model, t.model_file, t.arch, t.data, t.split, t.index, t.label, t.threat, t.x, t.prop)
        items.setdefault(item.key, item)
    return list(items.values()), nets, cfg.timeout


def slug(text: str) -> str:
    """A file-name-safe form of a model name or threat spec."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text.replace("/", "over")).strip("_")


def check_points(items: list[Item], rng: np.random.Generator, domain=DEFAULT_DOMAIN) -> np.ndarray:
    """Inputs for the onnxruntime checks of one model: its instances' inputs and points of their threat sets."""
    points = [it.x for it in items]
    for it in items:
        points.extend(parse_threat(it.threat).sample(it.x, CHECK_SAMPLES, rng, domain))
    return np.stack(points[:CHECK_MAX_POINTS])


def write_models(name: str, net: Network, rewritten: onnx.ModelProto | None, rewrite: str | None, points: np.ndarray,
                 folder: Path, log) -> tuple[Path, Path]:
    """Write the model (and its ``rewrite``), check them with onnxruntime; (the model's file, the file
    instances.csv lists: the rewrite's, if any)."""
    model = network_to_onnx(net)
    path = folder / f"{slug(name)}.onnx"
    onnx.save(model, path)
    logits = run_onnx(model, points)
    rounding = float32_rounding(net)
    log(f"{path.parent.name}/{path.name}: {len(net.layers)} layers, weights "
        + ("exactly float32" if rounding == 0 else f"rounded to float32 (largest change {rounding:.2g})")
        + f"; onnxruntime vs the float64 reference on {len(points)} inputs: max abs diff "
          f"{np.max(np.abs(logits - net.forward(points))):.2g} (logits up to {np.max(np.abs(logits)):.3g})")
    if rewritten is None:
        return path, path
    rpath = folder / f"{slug(name)}.{rewrite}.onnx"
    diff = float(np.max(np.abs(run_onnx(rewritten, points) - logits)))
    shape = "x".join(str(d.dim_value) for d in rewritten.graph.input[0].type.tensor_type.shape.dim)
    log(f"{rpath.parent.name}/{rpath.name}: {rewrite} rewrite, input {shape}, ops "
        f"{', '.join(sorted({n.op_type for n in rewritten.graph.node}))}; onnxruntime vs {path.name} on "
        f"{len(points)} inputs: max abs diff {diff:.2g}")
    if diff > REWRITE_TOL_REL * max(1.0, float(np.max(np.abs(logits)))):
        raise RuntimeError(f"the {rewrite} rewrite of {name} differs from the Conv3d model by {diff:.3g}: a bug; "
                           "the rewrite was not written")
    onnx.save(rewritten, rpath)
    return path, rpath


def readme(exported: list[ExportedInstance], rewrites: list[Rewrite], split_members: bool) -> str:
    """DIR/README.md: the layout, the rewrites, and which tools can run the files as written."""
    unions = sum(e.member is None and parse_threat(e.threat).kind in ("anyframes", "anypatch") for e in exported)
    lines = ["# stverify export", "",
             f"{len(exported)} VNN-COMP instance(s): `instances.csv` (onnx,vnnlib,timeout), `onnx/`, `vnnlib/`; "
             "`manifest.json` names the stverify instance (model, input, label, threat) behind every VNN-LIB file.", "",
             "## Disjunctive files and tools", "", TOOLS_NOTE, "",
             f"This export: {'one file per member box (--split-members)' if split_members else f'{unions} disjunctive file(s)'}."]
    if rewrites:
        lines += ["", "## Rewrites", "", "instances.csv names models without Conv3d; each computes its native model "
                  "exactly (the same weights, inputs in the same flat order, checked with onnxruntime at export):", ""]
        lines += [f"* `{r.onnx}`: the {r.kind} rewrite of `{r.native}`" for r in rewrites]
        lines += ["", "stverify reads the native model in their place (`stverify verify --model REWRITE.onnx --vnnlib P` "
                  "finds it through manifest.json)."]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def written_whole(out: Path):
    """A folder written whole or not at all: refuses an ``out`` that exists and is not an empty folder,
    yields a temporary folder on out's file system (in its nearest existing ancestor) to write into,
    and moves it to ``out`` when the block ends; on any error it is removed and nothing is left."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {str(out)!r} already exists and is not an empty folder; an export is written whole "
                         "into a new folder: remove it or choose another")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=parent))
    tmp.chmod(0o755)  # mkdtemp's 0o700 would stay on the export
    try:
        yield tmp
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()  # empty (checked above)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export(items: list[Item], nets: dict, out, timeout, rewrite: str | None = None, split_members: bool = False,
           log=print, domain=DEFAULT_DOMAIN) -> list[ExportedInstance]:
    """Write the benchmark folder ``out`` (module docstring); the manifest's instances; threat sets
    are clipped to the input ``domain``.  ``timeout``: seconds per instance, or {model name: seconds}."""
    if not items:
        raise InputError("nothing to export: no instances")
    timeouts = timeout if isinstance(timeout, dict) else {it.model: timeout for it in items}
    if not all(t > 0 for t in timeouts.values()) or not {it.model for it in items} <= timeouts.keys():
        raise InputError(f"--timeout must be > 0 for every model, found {timeout}")
    out = Path(out)
    unique = list({it.key: it for it in items}.values())
    files = {}  # instance key -> the threats its files state (the members of a union with split_members)
    for it in unique:
        threat = parse_threat(it.threat)
        files[it.key] = member_threats(threat, it.x.shape) if split_members else [threat]
        if len(files[it.key]) > MAX_MEMBER_FILES:
            raise InputError(f"--split-members: {it.threat} has {len(files[it.key])} member boxes on input {it.x.shape}, "
                             f"above the limit of {MAX_MEMBER_FILES} files per instance; export it as one disjunctive file")
    nets = {name: net for name, net in nets.items() if any(it.model == name for it in unique)}
    rewritten = {name: rewrite_network(net, rewrite) if rewrite else None for name, net in nets.items()}
    with written_whole(out) as tmp:
        exported, rewrites = _write(tmp, unique, files, nets, rewritten, rewrite, split_members, timeouts, log, domain)
    log(f"{len(exported)} VNN-LIB file(s) for {len(unique)} instance(s) in {out / 'vnnlib'}; {out / 'instances.csv'} "
        f"(onnx,vnnlib,timeout {'/'.join(f'{t:g}' for t in sorted(set(timeouts.values())))} s); {out / 'manifest.json'}; "
        f"{out / 'README.md'}")
    return exported


def _write(out: Path, unique: list[Item], files: dict, nets: dict, rewritten: dict, rewrite: str | None,
           split_members: bool, timeouts: dict, log, domain=DEFAULT_DOMAIN) -> tuple[list[ExportedInstance], list[Rewrite]]:
    """Write the export's files into ``out``: (the manifest's instances, its rewrites)."""
    (out / "onnx").mkdir()
    (out / "vnnlib").mkdir()
    rng = np.random.default_rng(0)
    model_files = {name: write_models(name, net, rewritten[name], rewrite,
                                      check_points([it for it in unique if it.model == name], rng, domain), out / "onnx",
                                      log)
                   for name, net in nets.items()}
    rel = lambda p: p.relative_to(out).as_posix()  # noqa: E731
    rewrites = [Rewrite(rel(run), rewrite, rel(native), sha256(run), sha256(native))
                for native, run in model_files.values() if run != native]
    exported = []
    for it in unique:
        split = split_members and isinstance(parse_threat(it.threat), (AnyFrames, AnyPatch))  # files state members
        stem = f"{slug(it.model)}_{it.split}{it.index}_{slug(it.threat)}" + ("" if it.prop is None else f"_{slug(it.prop)}")
        output = it.output(nets[it.model]).closure()  # VNN-COMP's readers take <= and >= only
        for k, t in enumerate(files[it.key]):
            path = out / "vnnlib" / (f"{stem}_m{k}.vnnlib" if split else f"{stem}.vnnlib")
            write_vnnlib(path, t, it.x, output, domain=domain)
            exported.append(ExportedInstance(rel(model_files[it.model][1]), rel(path), float(timeouts[it.model]), it.model,
                                             it.model_file, it.arch, it.data, it.split, it.index, it.label, t.spec(),
                                             it.threat if split else None, it.prop))
    vnncomp.write_instances(out / "instances.csv", [vnncomp.Instance(out / e.onnx, out / e.vnnlib, e.timeout) for e in exported])
    write_manifest(out, exported, rewrites, [TOOLS_NOTE])
    (out / "README.md").write_text(readme(exported, rewrites, split_members))
    return exported, rewrites
