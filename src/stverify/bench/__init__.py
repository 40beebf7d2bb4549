"""Benchmarks: TOML configs expanded into instances, a runner (a process per instance with a hard
timeout, local workers or a dask.distributed cluster), a resumable JSONL store, tables and figures.

    stverify bench CONFIG --out DIR [--workers N] [--dask tcp://host:8786] [--resume] [--data X.npz]
    stverify report DIR [--import NAME=results.csv ...] [--manifest PATH]

The names are imported on first use (``stverify.lazy``).
"""
from ..lazy import lazy_package

__all__ = lazy_package(__name__, {
    **dict.fromkeys(("Config", "Task", "default_threat", "expand", "load_config"), ".config"),
    "write_report": ".report",
    **dict.fromkeys(("run_bench", "run_isolated"), ".runner"),
    **dict.fromkeys(("Store", "read_results"), ".store"),
})
