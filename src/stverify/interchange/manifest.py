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
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath

from ..errors import InputError

FORMAT = "stverify-export/1"
NAME = "manifest.json"


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


def write_manifest(folder, instances) -> Path:
    path = Path(folder) / NAME
    path.write_text(json.dumps({"format": FORMAT, "instances": [asdict(i) for i in instances]}, indent=1) + "\n")
    return path


def read_manifest(path) -> list[ExportedInstance]:
    """The instances of ``path`` (a manifest.json, or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / NAME
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read the export manifest ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("instances"), list):
        raise InputError(f"{path}: not a stverify export manifest (expected format {FORMAT!r} and a list of instances)")
    names = {f.name for f in fields(ExportedInstance)}
    required = names - {"member"}
    out = []
    for n, item in enumerate(doc["instances"]):
        if not isinstance(item, dict) or item.keys() - names or required - item.keys():
            raise InputError(f"{path}: instances[{n}] must have the keys {', '.join(sorted(names))} (member optional)")
        out.append(ExportedInstance(**item))
    return out


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
