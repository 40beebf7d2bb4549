"""The manifest of an exported benchmark: which stverify instance each VNN-LIB file states.

``stverify export`` writes, beside the VNN-COMP layout (``instances.csv``, ``onnx/``, ``vnnlib/``),
``manifest.json``::

    {"format": "stverify-export/1",
     "instances": [{"onnx": "onnx/tiny.onnx", "vnnlib": "vnnlib/....vnnlib", "timeout": 60.0,
                    "model": "tiny", "model_file": null, "arch": null, "data": "<npz path>",
                    "split": "test", "index": 3, "label": 2,
                    "threat": "anyframes:eps=8/255,k=1", "member": null}, ...]}

``threat`` is the threat set the file states; with ``--split-members`` each file states one member
box, written as the stverify threat of that box (a ``frames`` or ``patch`` threat), and ``member``
holds the union it belongs to.  ``model`` / ``split`` / ``index`` / ``threat`` are the fields
that identify an instance in ``stverify bench`` results, so another tool's VNN-COMP results on the
exported files can be matched to stverify's (``match``).  Paths are relative to the manifest's folder.

Two optional keys (absent in older manifests):

    "rewrites": [{"onnx": "onnx/tiny.conv2d.onnx", "kind": "conv2d", "native": "onnx/tiny.onnx",
                  "sha256": "...", "native_sha256": "..."}],
    "notes": ["..."]

``rewrites`` records every ``--rewrite`` file (the one instances.csv names) with the native Conv3d
model it rewrites and both files' SHA-256 as written, so that stverify, which reads no Conv2d / Gemm
form of a 3D CNN, verifies the native model in its place (``native_model``; the export checked that
the two agree).  ``notes`` says which tools can run the files as written (see ``export``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath

from ..errors import InputError

FORMAT = "stverify-export/1"
NAME = "manifest.json"
TOOLS_NOTE = ("A union threat (anyframes, anypatch) is one disjunctive VNN-LIB file unless the export used "
              "--split-members. alpha-beta-CROWN reads the disjunctive file and prefers it (one run over all member "
              "boxes). Marabou is far slower on a disjunctive input set than on its member files (maraboupy 2.0.0, "
              "tiny_std, anyframes k=1, unsat: 3.8 s and 5.8 s against 0.5 s and 0.6 s for the 4 member files "
              "together; on larger models it timed out where the member files took 1.7-6.2 s each): export with "
              "--split-members for Marabou; a union is sat if any member file is sat, unsat if every member file "
              "is unsat (stverify report --import combines them).")


@dataclass(frozen=True)
class ExportedInstance:
    onnx: str
    vnnlib: str
    timeout: float
    model: str
    model_file: str | None
    arch: str | None
    data: str
    split: str
    index: int
    label: int
    threat: str
    member: str | None = None  # the union threat this file's member box belongs to (``--split-members``)
    property: str | None = None  # the output property the file states (``properties``); None: the label's robustness


@dataclass(frozen=True)
class Rewrite:
    """An ONNX file of the export that is the ``kind`` rewrite of the native Conv3d model ``native``."""

    onnx: str
    kind: str  # conv2d or gemm (``interchange.rewrite``)
    native: str
    sha256: str  # of the rewritten file as written
    native_sha256: str


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_manifest(folder, instances, rewrites=(), notes=()) -> Path:
    path = Path(folder) / NAME
    doc = {"format": FORMAT, "instances": [asdict(i) for i in instances]}
    if rewrites:
        doc["rewrites"] = [asdict(r) for r in rewrites]
    if notes:
        doc["notes"] = list(notes)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def _document(path) -> tuple[Path, dict]:
    """(the manifest's path, its JSON) for ``path``: a manifest.json, or the folder holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / NAME
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read the export manifest ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("instances"), list):
        raise InputError(f"{path}: not a stverify export manifest (expected format {FORMAT!r} and a list of instances)")
    return path, doc


def _entries(path: Path, doc: dict, key: str, cls, optional=frozenset()) -> list:
    names = {f.name for f in fields(cls)}
    items = doc.get(key, [])
    if not isinstance(items, list):
        raise InputError(f"{path}: {key} must be a list")
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or item.keys() - names or (names - optional) - item.keys():
            raise InputError(f"{path}: {key}[{n}] must have the keys {', '.join(sorted(names))}"
                             + (f" ({', '.join(sorted(optional))} optional)" if optional else ""))
        out.append(cls(**item))
    return out


def read_manifest(path) -> list[ExportedInstance]:
    """The instances of ``path`` (a manifest.json, or the folder holding one)."""
    path, doc = _document(path)
    return _entries(path, doc, "instances", ExportedInstance, optional={"member", "property"})


def read_rewrites(path) -> list[Rewrite]:
    """The rewrites a manifest records (module docstring); [] for a manifest without any."""
    path, doc = _document(path)
    return _entries(path, doc, "rewrites", Rewrite)


def native_model(onnx_path) -> Path | None:
    """The native Conv3d model in place of ``onnx_path`` when the manifest of the export holding it
    (``DIR/manifest.json`` for ``DIR/onnx/x.onnx``) records it as a rewrite; else None.  Refused when
    either file differs from what the export wrote (its SHA-256), since the export's check that the
    two models agree would no longer hold."""
    onnx_path = Path(onnx_path)
    root = onnx_path.resolve().parent.parent
    if onnx_path.suffix.lower() != ".onnx" or not (root / NAME).is_file():
        return None
    for r in read_rewrites(root):
        if (root / r.onnx).resolve() != onnx_path.resolve():
            continue
        native = root / r.native
        for path, digest in ((onnx_path, r.sha256), (native, r.native_sha256)):
            if not path.is_file() or sha256(path) != digest:
                raise InputError(f"{onnx_path}: {root / NAME} records it as the {r.kind} rewrite of {native}, but "
                                 f"{path} {'is missing' if not path.is_file() else 'changed since the export'}; "
                                 "export again")
        return native
    return None


def _norm(p: str) -> str:
    return str(PurePosixPath(str(p).replace("\\", "/"))).lstrip("./")


def match(vnnlib_paths, instances) -> dict[str, ExportedInstance]:
    """For each VNN-LIB path as another tool's results name it, the exported instance with that file.

    A path matches an instance whose ``vnnlib`` is a suffix of it (results CSVs usually prefix
    the benchmark folder, e.g. ``./benchmarks/stverify/vnnlib/x.vnnlib``); paths matching no
    instance, or more than one, are left out."""
    out = {}
    for p in vnnlib_paths:
        hits = [i for i in instances if ("/" + _norm(p)).endswith("/" + _norm(i.vnnlib))]
        if len(hits) == 1:
            out[p] = hits[0]
    return out
