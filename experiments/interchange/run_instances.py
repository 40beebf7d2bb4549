"""Run a VNN-COMP benchmark folder (``instances.csv``) the way a VNN-COMP tool does, with stverify's
VNN-LIB path (``load_vnnlib`` on the ONNX model and the property, then ``verify``), and write the
tool's results CSV (benchmark, onnx, vnnlib, prepare_time, result, run_time, witness file) and one
result file per instance.  This makes stverify "another tool" on an export of its own instances, so
``stverify report BENCH --import stverify-vnnlib=RESULTS.csv`` checks the interchange end to end.
A row whose ONNX file is a ``--rewrite`` (Conv2d / Gemm form, which stverify does not read) is run on
the native Conv3d model that the export's manifest records for it, as ``stverify verify --vnnlib`` does.

    python experiments/interchange/run_instances.py EXPORT_DIR --out RESULTS.csv [--method bab]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from stverify.interchange import vnncomp
from stverify.interchange.manifest import native_model
from stverify.interchange.vnnlib import load_vnnlib


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="a benchmark folder holding instances.csv (e.g. the --out of stverify export)")
    p.add_argument("--out", required=True, help="the results CSV; result files go to a folder beside it")
    p.add_argument("--method", default="bab", help="verify() method (default bab)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    folder, out = Path(args.folder), Path(args.out)
    files = out.with_suffix("")
    files.mkdir(parents=True, exist_ok=True)
    rows = []
    for inst in vnncomp.read_instances(folder / "instances.csv"):
        start = time.perf_counter()
        prop = load_vnnlib(inst.vnnlib, native_model(inst.onnx) or inst.onnx)
        prepared = time.perf_counter()
        result, witness, _ = prop.answer(prop.verify(method=args.method, timeout=inst.timeout))
        done = time.perf_counter()
        path = files / (inst.vnnlib.stem + ".txt")
        vnncomp.write_result(path, result, witness)
        rows.append(vnncomp.ResultRow(folder.name, inst.onnx.relative_to(folder).as_posix(),
                                      inst.vnnlib.relative_to(folder).as_posix(), prepared - start, result,
                                      done - prepared, path if result == "sat" else None))
        print(f"{inst.vnnlib.name}: {result} ({done - prepared:.2f} s)")
    vnncomp.write_results_csv(out, rows)
    print(f"{len(rows)} instances -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
