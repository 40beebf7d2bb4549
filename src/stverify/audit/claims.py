"""Claims to audit: per-neuron bounds and verdicts, from stverify's incomplete methods or another tool.

An instance is keyed like a ``stverify bench`` result: ``(model, split, index, threat)`` (``Key``).

**Bounds files** (another tool's per-neuron bounds), JSON::

    {"format": "stverify-bounds/1",
     "onnx": "net.onnx",                      # optional: resolves ONNX node names (relative to this file)
     "instances": [
       {"model": "tiny", "split": "test", "index": 3, "threat": "anyframes:eps=8/255,k=1",
        "layers": {"1": {"lower": [...], "upper": [...]},                  # the input of net.layers[1]
                   "layer3_Gemm": {"lower": [...], "upper": [...]}}},      # an ONNX node (or tensor) name
       {"vnnlib": "vnnlib/tiny_test_3_anyframes.vnnlib", "layers": {...}}  # an exported instance (manifest)
     ]}

or ``.npz``: a string array ``instances`` holding that JSON list without the ``layers``, optionally a
string array ``onnx``, and arrays ``"<k>:<layer>:lower"`` / ``"<k>:<layer>:upper"`` for instance k
of that list.

* An instance is named by ``model``, ``split``, ``index`` and ``threat`` (the stverify threat spec),
  or by ``vnnlib``: the path of a VNN-LIB file that ``stverify export`` wrote, looked up in the
  export manifest (``interchange.manifest.match``).
* A layer key that is an integer i gives bounds on the input of ``net.layers[i]`` (i = number of
  layers: the logits).  Any other key names an ONNX node or its output tensor; it stands for every
  layer input whose values the node's output equals on a probe input (float32 tolerance), e.g. a
  Conv node for the input of the ReLU after it.  The ONNX file comes from the entry's or the file's
  ``onnx`` key, else the model's own file, else the manifest.
* Arrays hold one lower and one upper bound per entry of that tensor, in row-major (C, T, H, W)
  order, nested or flat, batch axis optional.

**VNN-COMP results** (another tool's verdicts): a results CSV (``interchange.vnncomp``) on files that
``stverify export`` wrote; each row's VNN-LIB path is matched to its instance through the manifest,
``sat`` / ``unsat`` read as ``falsified`` / ``verified``, and a ``sat`` row's witness file gives the
counterexample (``X_i`` in ONNX order).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import InputError
from ..interchange import manifest as mf
from ..interchange import vnncomp
from ..stbp_hybrid.certify import certify

FORMAT = "stverify-bounds/1"
# stverify's incomplete methods as (relaxation, concretisation) of ``certify``; None: the
# relaxation comes from the method's options (stbp's ``relaxation``, default crown)
OWN_METHODS = {"box-ibp": ("ibp", "box"), "box-crown": ("crown", "box"), "stbp": (None, "threat")}


class Key(NamedTuple):
    model: str
    split: str
    index: int
    threat: str

    @classmethod
    def of(cls, inst) -> "Key":
        """The key of an instance: anything with ``model``, ``split``, ``index`` and ``threat``
        (a bench task, a manifest entry, a results record as a dict)."""
        return cls(*(inst[f] if isinstance(inst, dict) else getattr(inst, f) for f in cls._fields))


@dataclass
class Claim:
    """What one source says about one instance: bounds of layer inputs and / or a verdict."""

    source: str
    kind: str  # "ours", "bounds-file" or "vnncomp"
    bounds: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # flat lower, upper
    verdict: str | None = None  # a VerifyResult status
    witness: np.ndarray | None = None  # the input a falsified verdict names, if any
    time_s: float | None = None


def check_own_method(label: str, method: str) -> None:
    if method not in OWN_METHODS:
        raise InputError(f"method {label!r}: an audit checks the bound methods {', '.join(OWN_METHODS)}, "
                         f"not {method!r}")


def own_claim(label: str, method: str, options: dict, net, x, y: int, threat, domain) -> Claim:
    """The per-layer bounds and the verdict of one of stverify's incomplete methods."""
    check_own_method(label, method)
    relaxation, concretize = OWN_METHODS[method]
    cert = certify(net, x, y, threat, relaxation or options.get("relaxation", "crown"), concretize, domain,
                   members=int(options.get("members", 0)), alpha_every_margin=bool(options.get("alpha_every_margin", False)))
    bounds = {i: (lo.reshape(-1), hi.reshape(-1)) for i, (lo, hi) in enumerate(cert.bounds)}
    return Claim(label, "ours", bounds, "verified" if cert.verified else "unknown", None, cert.time_s)


# --- bounds files --------------------------------------------------------------------------
@dataclass
class BoundsEntry:
    """One instance of a bounds file, before its layer keys are resolved against a network."""

    where: str
    key: dict  # model/split/index/threat, or vnnlib
    layers: dict[str, tuple[np.ndarray, np.ndarray]]
    onnx: Path | None


def _key_fields(item: dict, where: str) -> dict:
    if "vnnlib" in item:
        return {"vnnlib": str(item["vnnlib"])}
    missing = [k for k in Key._fields if k not in item]
    if missing:
        raise InputError(f"{where}: name the instance by model, split, index and threat, or by vnnlib "
                         f"(missing {', '.join(missing)})")
    try:
        return {"model": str(item["model"]), "split": str(item["split"]), "index": int(item["index"]),
                "threat": str(item["threat"])}
    except (TypeError, ValueError):
        raise InputError(f"{where}: index must be an integer, got {item['index']!r}") from None


def _array(v, where: str) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{where}: expected an array of numbers") from None
    if np.isnan(a).any():
        raise InputError(f"{where}: NaN bounds")
    return a


def read_bounds_file(path) -> list[BoundsEntry]:
    """The entries of a bounds file (module docstring), JSON or npz by extension."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            doc = {"format": FORMAT, "instances": json.loads(str(arrays.pop("instances")))}
            if "onnx" in arrays:
                doc["onnx"] = str(arrays.pop("onnx"))
            for k, item in enumerate(doc["instances"]):
                item["layers"] = {}
            for name, a in arrays.items():
                k, rest = name.split(":", 1)
                layer, side = rest.rsplit(":", 1)
                doc["instances"][int(k)]["layers"].setdefault(layer, {})[side] = a
        else:
            doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, KeyError, IndexError) as e:
        raise InputError(f"{path}: cannot read the bounds file ({e}); expected {FORMAT!r} JSON or npz "
                         "(see stverify.audit.claims)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("instances"), list):
        raise InputError(f"{path}: not a bounds file (expected format {FORMAT!r} and a list of instances)")
    onnx_default = path.parent / doc["onnx"] if doc.get("onnx") else None
    out = []
    for n, item in enumerate(doc["instances"]):
        where = f"{path}: instances[{n}]"
        if not isinstance(item, dict) or not isinstance(item.get("layers"), dict):
            raise InputError(f"{where}: expected an object with a 'layers' table")
        layers = {}
        for name, b in item["layers"].items():
            if not isinstance(b, dict) or not {"lower", "upper"} <= b.keys():
                raise InputError(f"{where}: layer {name!r} needs 'lower' and 'upper'")
            lo, hi = _array(b["lower"], f"{where}: layer {name!r} lower"), _array(b["upper"], f"{where}: layer {name!r} upper")
            if lo.shape != hi.shape:
                raise InputError(f"{where}: layer {name!r}: {lo.size} lower but {hi.size} upper bounds")
            layers[str(name)] = (lo, hi)
        onnx_path = path.parent / item["onnx"] if item.get("onnx") else onnx_default
        out.append(BoundsEntry(where, _key_fields(item, where), layers, onnx_path))
    return out


def write_bounds_file(path, entries: list[dict], onnx: str | None = None) -> Path:
    """Write entries ``{**instance key, "layers": {layer: (lower, upper)}}`` as JSON or npz (by extension)."""
    path = Path(path)
    if path.suffix == ".npz":
        arrays = {"instances": np.array(json.dumps([{k: v for k, v in e.items() if k != "layers"} for e in entries]))}
        if onnx:
            arrays["onnx"] = np.array(onnx)
        for k, e in enumerate(entries):
            for layer, (lo, hi) in e["layers"].items():
                arrays[f"{k}:{layer}:lower"], arrays[f"{k}:{layer}:upper"] = np.asarray(lo), np.asarray(hi)
        np.savez_compressed(path, **arrays)
        return path
    doc = {"format": FORMAT, **({"onnx": onnx} if onnx else {}), "instances": [
        {**{k: v for k, v in e.items() if k != "layers"},
         "layers": {str(layer): {"lower": np.asarray(lo).tolist(), "upper": np.asarray(hi).tolist()}
                    for layer, (lo, hi) in e["layers"].items()}} for e in entries]}
    path.write_text(json.dumps(doc) + "\n")
    return path


def onnx_layer_map(onnx_path, net) -> dict[str, list[int]]:
    """ONNX node and tensor names -> the indices of the layer inputs of ``net`` that the node's output
    equals (value matching on a probe input, module docstring).  The probe enters the ONNX model in
    the shape of its input, in the same flat order: a ``--rewrite`` of the model (Conv2d or Gemm form,
    input 1 x (C*T) x H x W or 1 x C*T*H*W) reads the same values as the Conv3d model."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    try:
        model = onnx.load(str(onnx_path))
    except Exception as e:  # noqa: BLE001 - OSError, or protobuf's DecodeError for a file that is not ONNX
        raise InputError(f"{onnx_path}: cannot load the ONNX model ({e})") from None
    init = {t.name for t in model.graph.initializer}
    (inp,) = [i for i in model.graph.input if i.name not in init]
    probe = np.random.default_rng(0).uniform(0.0, 1.0, net.input_shape)
    acts = [a.reshape(-1) for a in net.activations(probe)]
    nodes = [(n.name, o) for n in model.graph.node for o in n.output]
    elem = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
    dims = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]  # a symbolic (batch) dimension: 1
    if int(np.prod(dims)) != probe.size:
        raise InputError(f"{onnx_path}: the input {inp.name!r} has shape {dims} ({int(np.prod(dims))} values), but the "
                         f"network's input {'x'.join(map(str, net.input_shape))} has {probe.size}: not this model")
    values = ReferenceEvaluator(model).run([o for _, o in nodes], {inp.name: probe.reshape(dims).astype(elem)})
    out: dict[str, list[int]] = {}
    for (node, tensor), v in zip(nodes, values):
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        hits = [i for i, a in enumerate(acts) if i > 0 and a.size == v.size and np.allclose(v, a, rtol=1e-4, atol=1e-5)]
        for name in {node, tensor} - {""}:
            out[name] = hits
    return out


def bounds_claims(source: str, entries: list[BoundsEntry], nets: dict, onnx_for: dict,
                  instance_of: dict) -> dict[Key, Claim]:
    """Resolve the entries of a bounds file to claims per instance key.

    ``nets``: Key -> Network; ``onnx_for``: Key -> an ONNX path (the model's own file or the
    manifest's) used when an entry names ONNX nodes but has no ``onnx`` of its own;
    ``instance_of``: vnnlib path -> Key (from the manifest)."""
    maps: dict = {}
    out = {}
    for e in entries:
        if "vnnlib" in e.key:
            key = instance_of.get(e.key["vnnlib"])
            if key is None:
                raise InputError(f"{e.where}: vnnlib {e.key['vnnlib']!r} is not an instance of the export manifest "
                                 "(give --manifest, or name the instance by model, split, index and threat)")
        else:
            key = Key(**e.key)
        if key not in nets:
            continue  # an instance outside the audit's selection
        net = nets[key]
        claim = out.setdefault(key, Claim(source, "bounds-file"))
        for name, (lo, hi) in e.layers.items():
            if name.lstrip("-").isdigit():
                targets = [int(name)]
                if not 0 <= targets[0] <= len(net.layers):
                    raise InputError(f"{e.where}: layer {name} does not exist (the network has layer inputs "
                                     f"0..{len(net.layers)})")
            else:
                path = e.onnx or onnx_for.get(key)
                if path is None:
                    raise InputError(f"{e.where}: layer {name!r} is an ONNX name, but no ONNX file is known for model "
                                     f"{key.model}: add \"onnx\": \"FILE\" to the bounds file")
                if path not in maps:
                    maps[path] = onnx_layer_map(path, net)
                if name not in maps[path]:
                    raise InputError(f"{e.where}: {path} has no node or tensor named {name!r}")
                targets = maps[path][name]
                if not targets:
                    raise InputError(f"{e.where}: the output of ONNX node {name!r} matches no layer input of the "
                                     "stverify network (a tensor stverify folds away, e.g. a Conv before its bias Add)")
            for i in targets:
                size = int(np.prod(net.shapes[i]))
                if lo.size != size:
                    raise InputError(f"{e.where}: layer {name!r} has {lo.size} bounds, the input of layer {i} has "
                                     f"{size} entries (shape {net.shapes[i]})")
                claim.bounds[i] = (lo, hi)
    return out


# --- VNN-COMP results --------------------------------------------------------------------------
def vnncomp_claims(source: str, results_csv, exported: list[mf.ExportedInstance], nets: dict) -> tuple[dict, list[str]]:
    """Claims per instance key from a tool's VNN-COMP results CSV on an exported benchmark, and the
    VNN-LIB paths of rows that match no exported instance (or an instance outside the audit)."""
    rows = vnncomp.read_results_csv(results_csv)
    matched = mf.match([r.vnnlib for r in rows], exported)
    out, unmatched = {}, []
    for r in rows:
        inst = matched.get(r.vnnlib)
        key = None if inst is None else Key.of(inst)
        if key is None or key not in nets:
            unmatched.append(r.vnnlib)
            continue
        witness = None
        if r.result == "sat" and r.witness is not None:
            _, w = vnncomp.read_result(r.witness)
            if w is not None:
                net = nets[key]
                size = int(np.prod(net.input_shape))
                witness = w.x.reshape(net.input_shape) if w.x.size == size else w.x
        out[key] = Claim(source, "vnncomp", {}, vnncomp.RESULT_TO_STATUS[r.result], witness, r.run_time)
    return out, unmatched


# --- every external source of an audit --------------------------------------------------------
def load_external(sources: dict, nets: dict, model_files: dict) -> tuple[dict[Key, list[Claim]], list[str]]:
    """Claims per instance key from ``sources`` = {"bounds_files": {tool: path}, "results": {tool: path},
    "manifest": path or None}, for the instances in ``nets`` (Key -> Network); ``model_files``: Key ->
    the model's file (or None).  Also returns notes on rows or entries that were not audited."""
    exported = mf.read_manifest(sources["manifest"]) if sources.get("manifest") else []
    root = Path(sources["manifest"]) if sources.get("manifest") else None
    if root is not None and not root.is_dir():
        root = root.parent
    instance_of = {e.vnnlib: Key.of(e) for e in exported}
    onnx_for = {Key.of(e): root / e.onnx for e in exported}
    for key, f in model_files.items():
        if f and str(f).endswith(".onnx"):
            onnx_for[key] = Path(f)
    out: dict[Key, list[Claim]] = {}
    notes = []
    for tool, path in sources.get("bounds_files", {}).items():
        entries = read_bounds_file(path)
        for e in entries:  # vnnlib paths as the tool wrote them, matched like results rows
            if "vnnlib" in e.key:
                hit = mf.match([e.key["vnnlib"]], exported).get(e.key["vnnlib"])
                if hit is not None:
                    instance_of[e.key["vnnlib"]] = Key.of(hit)
        claims = bounds_claims(tool, entries, nets, onnx_for, instance_of)
        if len(claims) < len(entries):
            notes.append(f"{tool}: {len(entries) - len(claims)} of {len(entries)} bounds entries name instances "
                         "outside the audit")
        for key, c in claims.items():
            out.setdefault(key, []).append(c)
    for tool, path in sources.get("results", {}).items():
        claims, unmatched = vnncomp_claims(tool, path, exported, nets)
        if unmatched:
            notes.append(f"{tool}: {len(unmatched)} result row(s) match no audited instance of the manifest "
                         f"(e.g. {unmatched[0]})")
        for key, c in claims.items():
            out.setdefault(key, []).append(c)
    return out, notes
