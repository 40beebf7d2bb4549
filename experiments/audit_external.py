"""Stand-ins for another tool's output, to audit with ``stverify audit --bounds ... --results ...``.

For the instances of ``audit_external.toml`` (zoo ``tiny``, two test inputs, ``anyframes`` 32/255 and
48/255) this
writes, under experiments/results/audit_external/:

* ``export/``: ``onnx/tiny.onnx`` (torch's ONNX export, node names such as ``/3/Gemm``) and the
  ``manifest.json`` that ``stverify export`` writes, naming one VNN-LIB file per instance (the audit
  matches the paths; it does not need the files);
* ``mytool/bounds.json``: "mytool"'s per-neuron bounds of the Conv3d and first Linear outputs and the
  logits, keyed by VNN-LIB path and ONNX node name: box-CROWN's bounds rounded to float32, as a GPU
  tool would report them, except that neuron 5 of the Linear output has its lower bound raised to the
  exact minimum + 1e-3 (a planted bug);
* ``mytool/results.csv`` and ``mytool/*.counterexample``: its VNN-COMP results: ``unsat`` where
  box-CROWN verifies, ``sat`` with the witness of stverify's attack where that finds one, else
  ``unknown``, except that the first instance with a witness is reported ``unsat`` (a planted wrong
  verdict).

    python experiments/audit_external.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stverify import certify
from stverify.audit import exact_bounds
from stverify.audit.claims import write_bounds_file
from stverify.bench.config import expand, load_config
from stverify.complete.attack import attack
from stverify.interchange import vnncomp as vc
from stverify.interchange.manifest import ExportedInstance, write_manifest
from stverify.threats import parse_threat
from stverify.zoo import load_pretrained

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "audit_external"


def main() -> None:
    torch.set_num_threads(1)
    tasks, nets = expand(load_config(HERE / "audit_external.toml"))
    insts = list({(t.model, t.index, t.threat): t for t in tasks}.values())
    export, tool = OUT / "export", OUT / "mytool"
    (export / "onnx").mkdir(parents=True, exist_ok=True)
    tool.mkdir(parents=True, exist_ok=True)
    model = load_pretrained("tiny")
    torch.onnx.export(model, torch.zeros((1,) + tuple(model.input_shape)), export / "onnx" / "tiny.onnx",
                      input_names=["x"], output_names=["logits"], dynamo=False)
    exported = [ExportedInstance("onnx/tiny.onnx", f"vnnlib/tiny_{t.split}_{t.index}_{k}.vnnlib", 60.0, t.model, None, None,
                                 t.data, t.split, t.index, t.label, t.threat) for k, t in enumerate(insts)]
    write_manifest(export, exported)
    entries, rows, planted_verdict = [], [], False
    for t, e in zip(insts, exported):
        net, threat = nets[t.model], parse_threat(t.threat)
        cert = certify(net, t.x, t.label, threat, "crown", "box")
        f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731 - round to nearest, as float32 tools do
        layers = {"/0/Conv_output_0": cert.bounds[1], "/3/Gemm_output_0": cert.bounds[4], "logits": cert.bounds[6]}
        layers = {k: (f32(lo), f32(hi)) for k, (lo, hi) in layers.items()}
        if not entries:  # the planted bug: one lower bound above the exact minimum
            lo = layers["/3/Gemm_output_0"][0]
            lo[5] = exact_bounds(net, t.x, threat, 4, neurons=[5]).lo_attained[5] + 1e-3
        entries.append({"vnnlib": e.vnnlib, "layers": {k: (lo.tolist(), hi.tolist()) for k, (lo, hi) in layers.items()}})
        witness = None
        if cert.verified:
            result = "unsat"
        else:
            point = attack(net, t.x, t.label, threat, time_limit=5.0)
            if point is None:
                result = "unknown"
            elif not planted_verdict:
                result, planted_verdict = "unsat", True  # the planted wrong verdict
            else:
                result, witness = "sat", tool / f"tiny_{t.index}_{threat.kind}_{len(rows)}.counterexample"
                vc.write_result(witness, "sat", vc.Witness(point.ravel(), net.forward(point)))
        rows.append(vc.ResultRow("stverify-tiny", e.onnx, e.vnnlib, 0.5, result, round(cert.time_s, 3), witness))
    write_bounds_file(tool / "bounds.json", entries, onnx="../export/onnx/tiny.onnx")
    vc.write_results_csv(tool / "results.csv", rows)
    rel = lambda p: p.relative_to(HERE.parent)  # noqa: E731
    print(f"wrote {rel(export)}/ (manifest.json, onnx/tiny.onnx) and {rel(tool)}/ (bounds.json, results.csv): "
          f"{', '.join(f'#{t.index} {r.result}' for t, r in zip(insts, rows))}")


if __name__ == "__main__":
    main()
