"""CPU training of the zoo models: standard or IBP-certified (Gowal et al., 2018).

Classifiers: IBP training minimises ``kappa * CE(f(x), y) + (1 - kappa) * CE(z_worst, y)`` where
``z_worst`` holds, over the L-inf box ``[max(0, x - eps), min(1, x + eps)]``, the interval lower
bound of logit ``y`` and the interval upper bounds of the other logits.  Regression models (a
dataset with float targets, e.g. the steering angle of ``driving``): the clean loss is the mean
squared error, the IBP loss the worst squared error over the box, max((u - y)^2, (l - y)^2) for the
output's interval [l, u].  ``eps`` ramps linearly from 0 and ``kappa`` from 1 to ``kappa_end`` over
the same steps; afterwards both stay fixed.

Batch norm (the graph models): while the loss is clean (standard training, or the warm-up before
the IBP ramp) batch norms train as usual, normalising by the batch's statistics and updating their
running statistics.  From the first IBP step on they are frozen in eval mode: a per-channel affine
map of the running statistics and the learned scale and shift, which is what the interval bounds
(``interval_all``) and the verifier see, so the trained model's eval-mode function is the one the
IBP loss bounded.

Metrics on the test split: classifiers, the clean accuracy and the IBP-certified accuracy at eps
under L-inf; regression models, the mean absolute error and the median over inputs of the IBP bound
on the output's deviation, max(u - f(x), f(x) - l), at eps.

CLI:  stverify train NAME [--method ibp] [--eps 2/255] [--epochs N] [--threads N] [--out DIR]
      (or python -m stverify.zoo.train NAME ...)
Torch uses ``--threads`` CPU threads, by default ``$OMP_NUM_THREADS`` when it is set, else 2; every
epoch logs its loss, the time so far and the estimated time left.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import validation
from ..errors import InputError
from ..stbp_hybrid.intervals import interval_all
from .architectures import ARCHITECTURES, build_torch, get_spec

METHODS = ("standard", "ibp")
N_CHECK = 100  # the manifest also records accuracies on the first N_CHECK test samples
DEFAULT_THREADS = 2  # when neither --threads nor OMP_NUM_THREADS says


# --- bounds --------------------------------------------------------------------------------
def linf_box(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The L-inf ball around ``x`` clipped to the data domain [0, 1]."""
    return (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)


def logit_bounds(model: nn.Module, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IBP lower and upper bounds of the logits over the box [lo, hi] (batched, differentiable)."""
    return interval_all(model, lo, hi)[-1]


def worst_case_logits(lb: torch.Tensor, ub: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Upper bounds for every logit except the true class ``y``, which gets its lower bound."""
    return ub.scatter(1, y[:, None], lb.gather(1, y[:, None]))


def certified(lb: torch.Tensor, ub: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """True where the lower bound of logit y exceeds the upper bound of every other logit."""
    others = ub.scatter(1, y[:, None], -math.inf)
    return lb.gather(1, y[:, None])[:, 0] > others.max(dim=1).values


def worst_squared_error(lb: torch.Tensor, ub: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per input, the largest squared error of an output in [lb, ub] (N x 1) against the target y (N)."""
    return torch.maximum((ub[:, 0] - y) ** 2, (lb[:, 0] - y) ** 2)


@torch.no_grad()
def evaluate(model: nn.Module, X, y, eps: float, batch_size: int = 100) -> dict:
    """In eval mode, on (X, y): a classifier's clean and IBP-certified accuracy (L-inf, radius
    ``eps``); a regression model's (float targets) mean absolute error and median IBP deviation bound."""
    X = torch.as_tensor(X, dtype=torch.float32)
    regression = torch.as_tensor(y).is_floating_point()
    y = torch.as_tensor(y, dtype=torch.float32 if regression else torch.int64)
    was_training = model.training
    model.eval()
    correct = cert = 0
    errors, deviations = [], []
    for a in range(0, len(X), batch_size):
        xb, yb = X[a:a + batch_size], y[a:a + batch_size]
        out = model(xb)
        lb, ub = logit_bounds(model, *linf_box(xb, eps))
        if regression:
            errors.append((out[:, 0] - yb).abs())
            deviations.append(torch.maximum(ub - out, out - lb)[:, 0])
        else:
            correct += int((out.argmax(1) == yb).sum())
            cert += int(certified(lb, ub, yb).sum())
    model.train(was_training)
    n = len(X)
    if regression:
        return {"n": n, "mae": float(torch.cat(errors).mean()), "ibp_deviation_median": float(torch.cat(deviations).median())}
    return {"n": n, "clean_acc": correct / max(n, 1), "ibp_certified_acc": cert / max(n, 1)}


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every batch norm of ``model`` in eval mode: its running statistics stay fixed (its scale
    and shift still learn), so it computes its eval-mode map, the one the bounds see."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


# --- training ------------------------------------------------------------------------------
def load_split(dataset: str, split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` samples (all when None) of a dataset split as float32 inputs and int64 labels
    (float32 regression targets)."""
    from ..data import ensure_dataset, load_npz

    X, y = load_npz(ensure_dataset(dataset), split)
    if n is not None:
        X, y = X[:n], y[:n]
    return torch.from_numpy(X.astype(np.float32)), torch.from_numpy(y.astype(np.float32) if y.dtype.kind == "f" else y)


def _ramp(step: int, start: float, length: float) -> float:
    """0 before ``start``, then linear to 1 over ``length`` steps, then 1."""
    if length <= 0:
        return float(step >= start)
    return min(max((step - start) / length, 0.0), 1.0)


def default_threads() -> int:
    """``$OMP_NUM_THREADS`` when set (a positive integer), else DEFAULT_THREADS."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not text:
        return DEFAULT_THREADS
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"OMP_NUM_THREADS must be a positive integer (torch CPU threads), got {text!r}")
    return int(text)


def train(name: str, method: str | None = None, eps: float | None = None, epochs: int | None = None,
          seed: int = 0, threads: int | None = None, lr: float | None = None, batch_size: int | None = None,
          warmup: float | None = None, ramp: float | None = None, kappa_end: float | None = None,
          n_train: int | None = None, n_test: int | None = None, log=None) -> tuple[nn.Module, dict]:
    """Train zoo model ``name`` on its dataset's train split; return (model in eval mode, metrics).

    Unset arguments take the model's recipe (``ARCHITECTURES[name].train``).  For ``ibp`` the
    eps / kappa ramp starts after ``warmup`` and lasts ``ramp`` (fractions of all steps).
    ``n_train`` / ``n_test`` restrict to the first samples of the splits (for quick checks);
    ``threads`` None: ``default_threads()``.
    Metrics (module docstring): clean test accuracy and IBP-certified test accuracy at ``eps`` under
    L-inf, or for a regression model the test MAE and median IBP deviation bound.
    """
    spec = get_spec(name)
    if not spec.trained:
        raise InputError(f"{name} is not trained: its weights are its seeded initialisation (init_seed={spec.init_seed})")
    recipe = spec.train
    method = method or recipe.get("method", "ibp")
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    eps = float(recipe.get("eps", 2 / 255) if eps is None else eps)
    epochs = int(recipe.get("epochs", 10) if epochs is None else epochs)
    lr = float(recipe.get("lr", 3e-3) if lr is None else lr)
    batch_size = int(recipe.get("batch_size", 50) if batch_size is None else batch_size)
    warmup = float(recipe.get("warmup", 0.05) if warmup is None else warmup)
    ramp = float(recipe.get("ramp", 0.4) if ramp is None else ramp)
    kappa_end = float(recipe.get("kappa_end", 0.5) if kappa_end is None else kappa_end)
    threads = default_threads() if threads is None else threads
    validation.number(eps, "eps", lo=0.0)
    validation.integer(epochs, "epochs", lo=1)
    validation.integer(batch_size, "batch size", lo=1)
    validation.integer(threads, "threads", lo=1)
    validation.number(lr, "learning rate", positive=True)
    for field, v in (("warmup", warmup), ("ramp", ramp), ("kappa_end", kappa_end)):
        if not 0 <= validation.number(v, field) <= 1:
            raise InputError(f"{field} must lie in [0, 1], got {v:g}")
    log = log or (lambda msg: None)

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        Xtr, ytr = load_split(spec.dataset, "train", n_train)
        Xte, yte = load_split(spec.dataset, "test", n_test)
        regression = ytr.is_floating_point()
        clean_loss, ibp_loss = (F.mse_loss, lambda lb, ub, y: worst_squared_error(lb, ub, y).mean()) if regression else (
            F.cross_entropy, lambda lb, ub, y: F.cross_entropy(worst_case_logits(lb, ub, y), y))
        torch.manual_seed(seed)
        model = build_torch(name)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        steps_per_epoch = math.ceil(len(Xtr) / batch_size)
        total = epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=lr * 0.05)
        order = torch.Generator().manual_seed(seed)
        t0, step = time.perf_counter(), 0
        log(f"{name}: {method} training, {epochs} epoch(s) of {steps_per_epoch} step(s), {threads} thread(s)")
        model.train()
        for epoch in range(epochs):
            perm = torch.randperm(len(Xtr), generator=order)
            run_loss = 0.0
            for a in range(0, len(Xtr), batch_size):
                idx = perm[a:a + batch_size]
                xb, yb = Xtr[idx], ytr[idx]
                frac = _ramp(step, warmup * total, ramp * total) if method == "ibp" else 0.0
                if frac > 0:
                    freeze_batchnorm(model)
                out = model(xb)
                loss = clean_loss(out[:, 0] if regression else out, yb)
                if frac > 0:
                    kappa = 1.0 - (1.0 - kappa_end) * frac
                    loss = kappa * loss + (1.0 - kappa) * ibp_loss(*logit_bounds(model, *linf_box(xb, frac * eps)), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                run_loss += float(loss.detach()) * len(idx)
            elapsed = time.perf_counter() - t0
            left = elapsed / (epoch + 1) * (epochs - epoch - 1)
            log(f"{name} epoch {epoch + 1}/{epochs}: loss {run_loss / len(Xtr):.4f}  ({elapsed:.1f} s, ETA {left:.0f} s)")
        train_time = time.perf_counter() - t0
        model.eval()
        test = evaluate(model, Xte, yte, eps)
        check = evaluate(model, Xte[:N_CHECK], yte[:N_CHECK], eps)
    finally:
        torch.set_num_threads(old_threads)
    metrics = {
        "name": spec.name, "architecture": spec.arch, "dataset": spec.dataset,
        "input_shape": list(spec.input_shape), "n_classes": spec.n_classes,
        "method": method, "eps": eps, "eps_text": _eps_text(eps), "threat": f"linf:eps={_eps_text(eps)}",
        "epochs": epochs, "seed": seed, "lr": lr, "batch_size": batch_size,
        "warmup": warmup, "ramp": ramp, "kappa_end": kappa_end, "threads": threads,
        "n_train": len(Xtr), "n_test": test["n"], "task": "regression" if regression else "classification",
        **({"test_mae": test["mae"], "ibp_deviation_median": test["ibp_deviation_median"]} if regression else
           {"clean_test_acc": test["clean_acc"], "ibp_certified_acc": test["ibp_certified_acc"]}),
        "check_first_n": check, "final_train_loss": run_loss / len(Xtr),
        "train_time_s": round(train_time, 2), "torch_version": torch.__version__,
    }
    return model, metrics


def _eps_text(eps: float) -> str:
    n = eps * 255
    return f"{round(n)}/255" if abs(n - round(n)) < 1e-9 else f"{eps:g}"


# --- saving --------------------------------------------------------------------------------
def save(model: nn.Module, metrics: dict, out: str | Path) -> Path:
    """Write ``out/NAME.pt`` (the state_dict) and update the entry NAME in ``out/manifest.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{metrics['name']}.pt"
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, path)
    mpath = out / "manifest.json"
    manifest = json.loads(mpath.read_text()) if mpath.is_file() else {}
    entry = dict(metrics, weights_file=path.name, size_bytes=path.stat().st_size,
                 sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    manifest[metrics["name"]] = entry
    mpath.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    return path


def _parse_eps(text: str) -> float:
    from ..threats import parse_eps

    try:
        v = parse_eps(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if math.isinf(v):
        raise argparse.ArgumentTypeError("eps must be finite for training")
    return v


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The argument parser of the training CLI (pass ``parser`` to fill a subcommand parser)."""
    p = parser or argparse.ArgumentParser(prog="python -m stverify.zoo.train", description=__doc__.split("\n\n")[0])
    trainable = [n for n, s in ARCHITECTURES.items() if s.trained]
    p.add_argument("name", choices=trainable, metavar="NAME", help=f"zoo model: {', '.join(trainable)}")
    p.add_argument("--method", choices=METHODS, help="standard or ibp (default: the model's recipe)")
    p.add_argument("--eps", type=_parse_eps, help="L-inf radius for IBP training and certification, e.g. 2/255")
    p.add_argument("--epochs", type=int, help="number of epochs (default: the model's recipe)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and data order (default 0)")
    p.add_argument("--threads", type=int, help=f"torch CPU threads (default: $OMP_NUM_THREADS if set, else {DEFAULT_THREADS})")
    p.add_argument("--lr", type=float, help="Adam learning rate (cosine-annealed)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--warmup", type=float, help="IBP: fraction of steps of clean training before the ramp")
    p.add_argument("--ramp", type=float, help="IBP: fraction of steps over which eps and kappa ramp")
    p.add_argument("--kappa-end", type=float, help="IBP: final weight of the clean loss (default 0.5)")
    p.add_argument("--out", default="zoo_weights", help="directory for NAME.pt and manifest.json (default ./zoo_weights)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")
    return p


def run(args) -> int:
    """Train, save and print the metrics as JSON, for parsed arguments of ``build_parser``."""
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    model, metrics = train(args.name, method=args.method, eps=args.eps, epochs=args.epochs, seed=args.seed,
                           threads=args.threads, lr=args.lr, batch_size=args.batch_size,
                           warmup=args.warmup, ramp=args.ramp, kappa_end=args.kappa_end, log=log)
    path = save(model, metrics, args.out)
    print(json.dumps(metrics, indent=2))
    print(f"wrote {path}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    """Train one model from the command line, save it, print its metrics as JSON."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
