"""``stverify export``: stverify instances as a VNN-COMP benchmark folder, for other verifiers.

    DIR/onnx/<model>.onnx           the Conv3d model (``onnx_writer``), with ``--rewrite R`` also
                                    <model>.<R>.onnx (``rewrite``: Conv2d or Gemm form, same inputs)
    DIR/vnnlib/<instance>.vnnlib    one property per instance: a union threat (anyframes, anypatch) is
                                    one disjunctive file; ``--split-members`` writes one file per member
                                    box instead (<instance>_m<k>.vnnlib), stated as a frames / patch threat
    DIR/instances.csv               onnx,vnnlib,timeout: the rows other tools run (the rewrite's ONNX
                                    when ``--rewrite`` is given, else the Conv3d model)
    DIR/manifest.json               the stverify instance behind every file (``manifest``)

Every ONNX file is run with onnxruntime before the export finishes: the Conv3d model against the
float64 reference on the instances' inputs and points sampled from their threat sets, and a rewrite
against the Conv3d model on the same points; the largest differences are reported.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..bench.config import ModelSpec, expand, load_config
from ..data import DATASETS, read_split
from .. import validation
from ..errors import InputError
from ..network import Network
from ..threats import DEFAULT_DOMAIN, AnyFrames, AnyPatch, Frames, Patch, Threat, parse_threat
from ..zoo import ARCHITECTURES
from . import vnncomp
from .manifest import ExportedInstance, write_manifest
from .onnx_writer import float32_rounding, network_to_onnx, run_onnx
from .rewrite import rewrite as rewrite_network
from .vnnlib import write_vnnlib

MAX_MEMBER_FILES = 1000  # per instance, with --split-members
CHECK_SAMPLES = 3  # points sampled from each instance's threat set for the onnxruntime checks
CHECK_MAX_POINTS = 64  # per model
REWRITE_TOL_REL = 1e-5  # a rewrite must match the Conv3d model to this times max(1, |logits|) (float32 noise)


@dataclass(frozen=True, eq=False)
class Item:
    """One stverify instance: a model, an input of a dataset, the label to verify, a threat set."""

    model: str
    model_file: str | None
    arch: str | None
    data: str
    split: str
    index: int
    label: int
    threat: str  # canonical spec
    x: np.ndarray

    @property
    def key(self) -> tuple:
        return self.model, self.split, self.index, self.threat


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
                    domain=None) -> tuple[list[Item], dict]:
    """The instances (every index x every threat) of one model, and {model name: Network}; the data read
    with ``layout`` and checked against ``domain`` (``data.read_split``)."""
    net = spec.load()
    data = spec.dataset()
    data = data if data in DATASETS else str(Path(data).resolve())  # a zoo dataset name, or an .npz path
    items = []
    inputs = read_split(data, split, layout=layout, input_shape=net.input_shape, domain=domain)
    for index in indices:
        x, y = inputs.sample(index)
        y = validation.chosen_label(label, y, net.n_classes, f"{data!r} [{split} #{index}]")
        for text in threats:
            threat = parse_threat(text)
            threat.validate(x.shape)
            items.append(Item(spec.name, spec.file, spec.arch, data, split, int(index), y, threat.spec(), x))
    return items, {spec.name: net}


def items_from_config(path, data: str | None = None) -> tuple[list[Item], dict, float]:
    """The instances of a bench TOML config (its methods aside), the networks, and its timeout."""
    cfg = load_config(path, data)
    tasks, nets = expand(cfg)
    items = {}
    for t in tasks:
        item = Item(t.model, t.model_file, t.arch, t.data, t.split, t.index, t.label, t.threat, t.x)
        items.setdefault(item.key, item)
    return list(items.values()), nets, cfg.timeout


def member_threats(threat: Threat, shape) -> list[Threat]:
    """The member boxes of a union threat, each as a single-box threat (frames, patch)."""
    if isinstance(threat, AnyFrames):
        return [Frames(threat.eps, c) for c in itertools.combinations(range(shape[1]), threat.k)]
    if isinstance(threat, AnyPatch):
        return [Patch(threat.eps, (int(t), int(t) + threat.len - 1), int(y), int(x), threat.h, threat.w)
                for t, y, x in threat.placements(shape)]
    return [threat]


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
                 folder: Path, log) -> Path:
    """Write the model (and its ``rewrite``), check them with onnxruntime; the file instances.csv lists."""
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
        return path
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
    return rpath


def export(items: list[Item], nets: dict, out, timeout: float, rewrite: str | None = None, split_members: bool = False,
           log=print, domain=DEFAULT_DOMAIN) -> list[ExportedInstance]:
    """Write the benchmark folder ``out`` (module docstring); the manifest's instances; threat sets
    are clipped to the input ``domain``."""
    if not items:
        raise InputError("nothing to export: no instances")
    if not timeout > 0:
        raise InputError(f"--timeout must be > 0, found {timeout}")
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
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    (out / "vnnlib").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    run_files = {name: write_models(name, net, rewritten[name], rewrite,
                                    check_points([it for it in unique if it.model == name], rng, domain), out / "onnx", log)
                 for name, net in nets.items()}
    exported = []
    for it in unique:
        split = split_members and isinstance(parse_threat(it.threat), (AnyFrames, AnyPatch))  # files state members
        stem = f"{slug(it.model)}_{it.split}{it.index}_{slug(it.threat)}"
        for k, t in enumerate(files[it.key]):
            path = out / "vnnlib" / (f"{stem}_m{k}.vnnlib" if split else f"{stem}.vnnlib")
            write_vnnlib(path, t, it.x, it.label, nets[it.model].n_classes, domain=domain)
            exported.append(ExportedInstance(run_files[it.model].relative_to(out).as_posix(), path.relative_to(out).as_posix(),
                                             float(timeout), it.model, it.model_file, it.arch, it.data, it.split, it.index,
                                             it.label, t.spec(), it.threat if split else None))
    vnncomp.write_instances(out / "instances.csv", [vnncomp.Instance(out / e.onnx, out / e.vnnlib, e.timeout) for e in exported])
    write_manifest(out, exported)
    log(f"{len(exported)} VNN-LIB file(s) for {len(unique)} instance(s) in {out / 'vnnlib'}; {out / 'instances.csv'} "
        f"(onnx,vnnlib,timeout {timeout:g} s); {out / 'manifest.json'}")
    return exported
