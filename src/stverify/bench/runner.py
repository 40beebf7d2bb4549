"""Run the instances of a config: each in its own process, killed at timeout + grace, on a local
pool of N at a time or on a dask.distributed cluster; the driver appends every result as it comes.

Instance processes are forked from a forkserver that has imported stverify once (``spawn`` where
fork is unavailable), so a fresh process per instance costs milliseconds, not the seconds of
importing torch.  Times are warm: an instance process first runs the same call with a timeout of
at most WARM_UP_S (the warm-up, untimed), so that ``time_s``, the wall time of the verification
itself, leaves out what only a process's first call pays (torch's first use of each kernel shape,
lazy initialisation); the kill limit starts after the warm-up, and ``wall_s`` (the instance
process's life) and ``warm_up_s`` include it.

One run at a time per output directory: the driver holds an exclusive ``flock`` on OUT/.lock for
the whole run, so a second runner on the same directory is refused (the lock dies with its
process, so a lock file left by a killed run blocks nothing).  Everything that can be checked is
checked before anything is written: the config, the models, the data, and the directory's state.
"""
from __future__ import annotations

import concurrent.futures
import fcntl
import functools
import importlib
import multiprocessing
import os
import signal
import socket
import threading
import time
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import InputError
from ..result import STATUSES, VerifyResult
from ..verify import verify
from .config import Config, Task, expand
from .store import Store

LOCK = ".lock"
WARM_UP_S = 1.0
STYLE = {"verified": "green", "falsified": "red", "unknown": "yellow", "timeout": "magenta", "error": "bold red"}
_LIVE: set = set()  # instance processes running in this process (killed on Ctrl-C)
_LIVE_LOCK = threading.Lock()


@functools.cache
def _context():
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def _child(task: Task, net, conn) -> None:
    """Instance process: the warm-up (module docstring), then verify; sends the warm-up's seconds,
    then the VerifyResult (an ``error`` one if it raises)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it kills us
    torch.set_num_threads(task.threads)
    start = time.perf_counter()
    try:
        for module in task.plugins:
            importlib.import_module(module)
        run = functools.partial(verify, net, task.x, task.target(net), task.threat, method=task.call["method"],
                                **task.call["options"])
        run(timeout=min(task.call["timeout"], WARM_UP_S))
        conn.send(time.perf_counter() - start)
        start = time.perf_counter()
        res = run(timeout=task.call["timeout"])
    except Exception as e:  # noqa: BLE001 - any failure of one instance is its result
        res = VerifyResult("error", task.call["method"], time.perf_counter() - start, None, None,
                           {"traceback": traceback.format_exc(limit=-4)}, f"{type(e).__name__}: {e}")
    conn.send(res)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def run_isolated(task: Task, net) -> tuple[dict, np.ndarray | None]:
    """Run one instance in a fresh process with a hard kill at timeout + grace: (results line, counterexample)."""
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    # not daemonic: it may start children of its own (a solver or z3 process killed at its deadline); it is
    # killed below, or by _kill_live
    proc = ctx.Process(target=_child, args=(task, net, send), daemon=False)
    limit = task.call["timeout"] + task.grace
    started = _now()
    proc.start()  # returns once the process exists (the first call also waits for the forkserver)
    t0 = time.perf_counter()
    with _LIVE_LOCK:
        _LIVE.add(proc)
    send.close()
    res, warm_up = None, None
    try:
        while res is None and recv.poll(limit if warm_up is None else limit - (time.perf_counter() - t0 - warm_up)):
            got = recv.recv()
            if isinstance(got, VerifyResult):
                res = got
            else:  # the warm-up is over: the limit starts now
                warm_up = got
    except EOFError:  # the process died without a result
        pass
    finally:
        killed = res is None and proc.is_alive()
        if not killed:
            proc.join(1.0)
        proc.kill()
        proc.join()
        recv.close()
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    wall = time.perf_counter() - t0
    if res is None:
        msg = (f"killed after {wall:.1f} s: no result within timeout {task.call['timeout']:g} s + grace {task.grace:g} s"
               if killed else f"the instance process died (exit code {proc.exitcode})")
        res = VerifyResult("timeout" if killed else "error", task.call["method"], wall, message=msg)
    out = res.to_dict()
    out["verifier"] = out.pop("method")
    out["counterexample"] = None
    return ({**task.record(), **out, "host": socket.gethostname(), "pid": proc.pid, "started": started,
             "finished": _now(), "wall_s": wall, "warm_up_s": warm_up}, res.counterexample)


def _kill_live() -> None:
    with _LIVE_LOCK:
        for proc in list(_LIVE):
            proc.kill()


@contextmanager
def _local(workers: int, nets: dict):
    pool = concurrent.futures.ThreadPoolExecutor(max(1, workers))
    try:
        yield (lambda t: pool.submit(run_isolated, t, nets[t.model])), concurrent.futures.as_completed
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        _kill_live()
        raise
    finally:
        pool.shutdown(wait=True)


def _daemonic() -> bool:
    return multiprocessing.current_process().daemon


@contextmanager
def _dask(address: str, nets: dict):
    from distributed import Client, as_completed

    with Client(address) as client:
        if any(client.run(_daemonic).values()):
            raise InputError(f"the dask workers at {address} are daemonic processes, which cannot start the per-instance "
                             "process; start them with `dask worker ADDRESS --no-nanny` or with the environment "
                             "variable DASK_DISTRIBUTED__WORKER__DAEMON=False")
        scattered = {name: client.scatter(net, broadcast=True) for name, net in nets.items()}
        yield (lambda t: client.submit(run_isolated, t, scattered[t.model], pure=False)), as_completed


def _counts_text(counts: dict, short: bool = False) -> str:
    return "  ".join(f"[{STYLE[s]}]{s[:4] if short else s} {counts[s]}[/]" for s in STATUSES)


@contextmanager
def locked(out: Path):
    """Hold the exclusive lock of the output directory (module docstring) for the block."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    f = open(out / LOCK, "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise InputError(f"{out} is in use by another stverify bench run ({holder}); wait for it to finish "
                             "or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {_now()}\n")
        f.flush()
        yield
    finally:
        f.close()  # releases the lock


def run_bench(cfg: Config, out, workers: int = 1, dask: str | None = None, resume: bool = False,
              console: Console | None = None) -> dict:
    """Run every instance of ``cfg`` not yet in ``out``; return the counts by status of all results."""
    console = console or Console(stderr=True, soft_wrap=True)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"--workers must be an integer >= 1, got {workers!r}")
    tasks, nets = expand(cfg)
    out = Path(out)
    with locked(out):
        return _run(cfg, tasks, nets, out, workers, dask, resume, console)


def _run(cfg, tasks, nets, out: Path, workers, dask, resume, console) -> dict:
    store = Store(out, resume)
    copy = out / "config.toml"
    if copy.exists() and copy.read_text() != cfg.text:
        console.print(f"[yellow]note: the config differs from {copy}, the one this run started with; "
                      "finished instances are still skipped[/]")
    copy.write_text(cfg.text)
    todo = [t for t in tasks if t.key not in store.keys]
    counts = dict.fromkeys(STATUSES, 0)
    for r in store.records:
        counts[r["status"]] += 1
    console.print(f"{len(tasks)} runs (instance x method), {len(tasks) - len(todo)} already done; "
                  f"{'dask ' + dask if dask else f'{workers} local worker(s)'}; results in {store.path}")
    progress = Progress(TextColumn("bench"), BarColumn(bar_width=24), MofNCompleteColumn(), TextColumn("{task.fields[counts]}"),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                        disable=not console.is_terminal)
    bar = progress.add_task("bench", total=len(tasks), completed=len(tasks) - len(todo), counts=_counts_text(counts, True))
    last_log = time.monotonic()
    with progress, (_dask(dask, nets) if dask else _local(workers, nets)) as (submit, as_completed):
        for fut in as_completed([submit(t) for t in todo]):
            record, cex = fut.result()
            store.append(record, cex)
            counts[record["status"]] += 1
            progress.update(bar, advance=1, counts=_counts_text(counts, True))
            if not console.is_terminal and time.monotonic() - last_log > 30:
                console.print(f"{sum(counts.values())}/{len(tasks)}  {_counts_text(counts)}", highlight=False)
                last_log = time.monotonic()
    console.print(f"done: {len(tasks)}/{len(tasks)}  {_counts_text(counts)}", highlight=False)
    return counts
