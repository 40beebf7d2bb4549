"""Differential sweep of the MILP backends' claimed optima (README, "Floating point").

Each backend (SCIP, HiGHS; SCIP without presolve on the unrelaxed model as a reference for logits)
minimises a unit over the MILP of a zoo model and threat; its claimed optimum (dual bound) must not
exceed the float64 value, at any point of the set that any backend found, by more than 1e-6
relative.  ``logits``: every logit of tiny, tiny_std, tiny_maxpool x 6 threats x 3 inputs.
``neurons``: the minimum and maximum of the first 6 unstable neurons of every ReLU input of
medmnist, test inputs 0 and 1 x 2 threats.  Prints every violation and the worst relative excess.

    python experiments/solver_sweep.py logits     # about 10 min on 2 cores
    python experiments/solver_sweep.py neurons    # about 20 min
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np

import stverify as sv
from stverify import zoo
from stverify.data import ensure_dataset
from stverify.encodings.backends import scip, solve
from stverify.encodings.milp import LinExpr, encode
from stverify.network.layers import ReLU
from stverify.stbp_hybrid.certify import certify

LOGIT_THREATS = ["linf:eps=2/255", "linf:eps=8/255", "anyframes:k=1,eps=16/255",
                 "patch:eps=16/255,t=1-2,y=2,x=2,h=3,w=3", "anypatch:eps=16/255,len=2,h=3,w=3",
                 "frames:eps=8/255,frames=0+1"]
NEURON_THREATS = ["linf:eps=2/255", "anyframes:k=2,eps=8/255"]
TOL = 1e-6


class Sweep:
    def __init__(self):
        self.checks, self.worst, self.violations = 0, 0.0, 0

    def check(self, what: str, results: dict, value_at) -> None:
        """``results``: {backend: SolveResult} of one minimisation; ``value_at(x)``: the objective's
        float64 value at the solver point ``x``, or None when the point is outside the set."""
        values = [v for r in results.values() if r.x is not None and (v := value_at(r.x)) is not None]
        if not values:
            return
        best = min(values)
        for name, r in results.items():
            if r.status != "optimal":
                continue
            self.checks += 1
            excess = (r.bound - best) / (1 + abs(best))
            self.worst = max(self.worst, excess)
            if excess > TOL:
                self.violations += 1
                print(f"VIOLATION {what} {name}: claimed {r.bound:.8f} > point {best:.8f}", flush=True)

    def summary(self, label: str) -> str:
        return f"{label}: {self.checks} checks, {self.violations} violations, worst relative excess {self.worst:.2e}"


def _data(model: str):
    return sv.load_npz(ensure_dataset(zoo.ARCHITECTURES[model].dataset), "test")


def logits(sweep: Sweep) -> None:
    for model in ("tiny", "tiny_std", "tiny_maxpool"):
        net = zoo.pretrained_network(model)
        X, Y = _data(model)
        for i, text in itertools.product(range(3), LOGIT_THREATS):
            threat = sv.parse_threat(text)
            enc = encode(net, X[i], threat, certify(net, X[i], Y[i], threat, "crown", "threat").bounds)
            L, c = enc.logits
            for j in range(net.n_classes):
                obj = LinExpr(np.asarray(L[j].todense()).ravel(), float(c[j]))
                results = {s: solve(enc.model, obj, s, time_limit=20) for s in ("scip", "highs")}
                m, xs = scip.build(enc.model)
                m.setParam("presolving/maxrounds", 0)
                m.setParam("limits/time", 20)
                results["scip-nopresolve"] = scip.optimize(m, xs, obj)

                def value_at(x, i=i, j=j, threat=threat):
                    p = enc.point(x)
                    return net.forward(p)[j] if threat.contains(X[i], p, tol=1e-6) else None

                sweep.check(f"{model} #{i} {text} logit {j}", results, value_at)
        print(sweep.summary(model), flush=True)


def neurons(sweep: Sweep) -> None:
    net = zoo.pretrained_network("medmnist")
    X, Y = _data("medmnist")
    relus = [i for i, layer in enumerate(net.layers) if isinstance(layer, ReLU)]
    for i, text in itertools.product(range(2), NEURON_THREATS):
        threat = sv.parse_threat(text)
        cert = certify(net, X[i], Y[i], threat, "crown", "threat")
        for layer in relus:
            lo, hi = (b.reshape(-1) for b in cert.bounds[layer])
            unstable = np.flatnonzero((lo < 0) & (hi > 0))[:6]
            if not len(unstable):
                continue
            enc = encode(net, X[i], threat, cert.bounds, upto=layer)
            for u, sign in itertools.product(unstable, (1.0, -1.0)):
                coef = np.zeros(enc.model.n_vars)
                coef[int(enc.vars[layer].reshape(-1)[u])] = sign
                obj = LinExpr(coef)
                results = {s: solve(enc.model, obj, s, time_limit=10) for s in ("scip", "highs")}

                def value_at(x, i=i, layer=layer, u=u, sign=sign, threat=threat):
                    p = enc.point(x)
                    inside = threat.contains(X[i], p, tol=1e-6)
                    return sign * net.activations(p)[layer].reshape(-1)[u] if inside else None

                sweep.check(f"medmnist #{i} {text} layer {layer} neuron {u} sign {sign:+g}", results, value_at)
        print(sweep.summary(f"medmnist #{i} {text}"), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=("logits", "neurons"))
    args = p.parse_args()
    sweep = Sweep()
    {"logits": logits, "neurons": neurons}[args.part](sweep)
    print(sweep.summary("all"))
    raise SystemExit(1 if sweep.violations else 0)


if __name__ == "__main__":
    main()
