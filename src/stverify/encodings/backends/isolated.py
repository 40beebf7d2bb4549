"""A solver's model in a child process, killed at the deadline.

Solvers do not always honour their own time limits: SCIP's presolve ran 8 s past a 26 s limit on
a model with 10M terms (one dense layer of an 11M-parameter network).  So a big model is built
and solved in a forked child process (the parent's model is inherited, not copied through a
pipe); the parent waits for each answer until the deadline plus GRACE_S, then kills the child
and answers ``timeout``.  The child serves one objective after another, as ``Loaded`` does.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import time

from . import SolverError, out_of_time

GRACE_S = 0.5  # how long after the deadline a solver may take to stop by itself


def available() -> bool:
    """Whether a child process can be started here (a daemonic process cannot have children)."""
    return "fork" in mp.get_all_start_methods() and not mp.current_process().daemon


def _serve(model, solver: str, deadline: float, threads: int, conn) -> None:
    from . import load

    try:
        loaded = load(model, solver, deadline=deadline, threads=threads, isolate=False)
        conn.send(None if loaded is None else "built")
        while loaded is not None:
            objective, time_limit, early_stop = conn.recv()
            conn.send(loaded.minimise(objective, time_limit=time_limit, early_stop=early_stop))
    except EOFError:  # the parent is done with us
        pass
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(SolverError(str(e)) if isinstance(e, SolverError) else SolverError(f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


class Isolated:
    """``backends.Loaded`` served by a child process (module docstring); ``built`` is False when
    the deadline passed before the model was built."""

    _proc = None

    def __init__(self, model, solver: str, deadline: float, threads: int):
        self.solver, self.deadline = solver, deadline
        ctx = mp.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(model, solver, deadline, threads, child), daemon=True)
        self._proc.start()
        child.close()
        self.built = self._answer() == "built"
        if not self.built:
            self.close()

    def _answer(self):
        """The child's next message; None (and the child killed) when none comes in time."""
        if self._proc is None:
            return None
        wait = None if math.isinf(self.deadline) else max(self.deadline + GRACE_S - time.perf_counter(), 0.0)
        try:
            got = self._conn.recv() if self._conn.poll(wait) else None
        except EOFError:
            self._proc.join()
            got = SolverError(f"the {self.solver} process died (exit code {self._proc.exitcode})")
        if got is None or isinstance(got, SolverError):
            self.close()
        if isinstance(got, SolverError):
            raise got
        return got

    def minimise(self, objective, *, time_limit=None, early_stop=None):
        if self._proc is not None:
            self._conn.send((objective, time_limit, early_stop))
        r = self._answer()
        return out_of_time(self.solver, "time limit reached: the solver process was stopped") if r is None else r

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join()
            self._conn.close()
            self._proc = None

    def __del__(self):
        self.close()
