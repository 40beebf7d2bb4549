"""The results of a run: DIR/results.jsonl (one line per finished instance, fsynced) and
DIR/counterexamples/*.npy (named by content hash, referenced from the lines)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..errors import InputError

KEY_FIELDS = ("model", "split", "index", "threat", "method")


def instance_key(record: dict) -> str:
    return "|".join(str(record[k]) for k in KEY_FIELDS)


def _fsync_write(path: Path, mode: str, data) -> None:
    with open(path, mode) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class Store:
    def __init__(self, out, resume: bool = False):
        self.dir = Path(out)
        self.path = self.dir / "results.jsonl"
        self.records = read_results(self.path)
        if self.records and not resume:
            raise InputError(f"{self.dir} already holds {len(self.records)} results; pass --resume to continue that run, "
                             "or choose another --out")
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
            _fsync_write(self.path, "a", "\n")  # a line cut by a kill: end it, read_results skips it
        self.keys = {instance_key(r) for r in self.records}

    def append(self, record: dict, counterexample: np.ndarray | None = None) -> None:
        """Write one result line (and its counterexample first), durably."""
        if counterexample is not None:
            arr = np.ascontiguousarray(counterexample, dtype=np.float64)
            name = f"counterexamples/{hashlib.sha256(arr.tobytes() + str(arr.shape).encode()).hexdigest()[:20]}.npy"
            (self.dir / "counterexamples").mkdir(exist_ok=True)
            with open(self.dir / name, "wb") as f:
                np.save(f, arr)
                f.flush()
                os.fsync(f.fileno())
            record = {**record, "counterexample": name}
        _fsync_write(self.path, "a", json.dumps(record) + "\n")
        self.records.append(record)
        self.keys.add(instance_key(record))


def read_results(path) -> list[dict]:
    """Every complete line of a results file (a line cut short by a kill is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
