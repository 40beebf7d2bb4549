"""The result of one verification, in the schema of ARCHITECTURE.md.

``margin_lb`` and ``margin_ub`` bound the same number, the minimum over the threat set of
min_{j != y} (logit_y - logit_j): ``margin_lb`` is a sound lower bound, ``margin_ub`` the margin at
a point of the set (the best counterexample found, or the solver's best point).  A bound that says
nothing (-inf below, +inf above) is stored as None; a NaN margin is refused (it would be a bug).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

STATUSES = ("verified", "falsified", "unknown", "timeout", "error")


@dataclass
class VerifyResult:
    status: str
    method: str
    time_s: float
    margin_lb: float | None = None  # sound lower bound of min_j (logit_y - logit_j) over the set
    counterexample: np.ndarray | None = None  # replayed, inside the set, misclassified
    stats: dict = field(default_factory=dict)
    message: str = ""
    margin_ub: float | None = None  # upper bound of the same minimum: the margin of the best point found

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status == "falsified" and self.counterexample is None:
            raise ValueError("a falsified result needs its counterexample")
        for name, useless in (("margin_lb", -math.inf), ("margin_ub", math.inf)):
            v = getattr(self, name)
            if v is not None:
                v = float(v)
                if math.isnan(v):
                    raise ValueError(f"{name} is NaN")
                setattr(self, name, None if v == useless else v)

    def to_dict(self) -> dict:
        def clean(v):
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if isinstance(v, np.ndarray):
                return clean(v.tolist())
            if isinstance(v, (np.floating, float)):
                v = float(v)
                return v if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "nan")
            if isinstance(v, np.integer):
                return int(v)
            return v

        return clean({"status": self.status, "method": self.method, "time_s": self.time_s, "margin_lb": self.margin_lb,
                      "margin_ub": self.margin_ub, "counterexample": self.counterexample, "stats": self.stats, "message": self.message})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())
