"""Benchmarks: TOML configs expanded into instances, a runner (a process per instance with a hard
timeout, local workers or a dask.distributed cluster), a resumable JSONL store, tables and figures.

    stverify bench CONFIG --out DIR [--workers N] [--dask tcp://host:8786] [--resume] [--data X.npz]
    stverify report DIR [--import NAME=results.csv ...] [--manifest PATH]
"""
from .config import Config, Task, default_threat, expand, load_config
from .report import write_report
from .runner import run_bench, run_isolated
from .store import Store, read_results

__all__ = ["Config", "Store", "Task", "default_threat", "expand", "load_config", "read_results", "run_bench",
           "run_isolated", "write_report"]
