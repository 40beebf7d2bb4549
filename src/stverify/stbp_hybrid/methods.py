"""The bound methods of ``verify()``: STBP and the bounding-box baselines, as VerifyResults.

``stbp``: exact first layer + IBP / CROWN / alpha-CROWN, exact concretisation over the threat set;
where that leaves a margin open on a union of at most MEMBERS member boxes (anyframes over few
frames, anypatch with few placements), every member box is bounded too and the union's margin is
the better of the two (``certify``'s ``members``: 1.7-7x the time of the union's pass, paid only
where the union's bounds do not decide; they verified instances the union's bounds did not);
``box-ibp`` and ``box-crown``: the same bounds over the threat's bounding box (what a generic
L-infinity verifier does).  A positive margin lower bound is ``verified``; anything else ``unknown``,
or ``timeout`` when the time limit cut the relaxation short (IBP for the rest: the bound stays sound).
``device`` (torch device) and ``memory_budget`` (bytes per chunk of rows) go to ``certify``.
"""
from __future__ import annotations

from ..deadline import of as deadline_of
from ..result import VerifyResult
from ..threats import DEFAULT_DOMAIN
from .certify import certify

MEMBERS = 16


def _bound_result(method: str, cert) -> VerifyResult:
    cut = cert.stats.get("deadline_passed", False)
    status = "verified" if cert.verified else "timeout" if cut else "unknown"
    msg = "" if cert.verified else "the margin lower bound is not positive: the bounds are too loose to decide"
    if cut and not cert.verified:
        msg = "time limit reached: the rest of the bounds fell back to IBP, and they do not decide"
    stats = {"relaxation": cert.relaxation, "concretize": cert.concretize, "unstable_relus": sum(cert.unstable.values()),
             "unstable_per_layer": cert.unstable, "margin_lb_per_class": cert.margin_lb,
             **{k: cert.stats[k] for k in ("members", "members_s") if k in cert.stats}}
    return VerifyResult(status, method, cert.time_s, cert.min_margin, None, stats, msg)


def verify_stbp(net, x, y, threat, relaxation: str = "crown", domain=DEFAULT_DOMAIN, timeout=None, device=None,
                memory_budget=None, members: int = MEMBERS, alpha_every_margin: bool = False, **_) -> VerifyResult:
    """``members``: the most member boxes a union may have for its members to be bounded (0: never);
    ``alpha_every_margin``: alpha-CROWN optimises every margin (for the tightest bounds), not only the open ones."""
    return _bound_result("stbp", certify(net, x, y, threat, relaxation, "threat", domain, deadline=deadline_of(timeout),
                                         device=device, memory_budget=memory_budget, members=members,
                                         alpha_every_margin=alpha_every_margin))


def verify_box_ibp(net, x, y, threat, domain=DEFAULT_DOMAIN, timeout=None, device=None, memory_budget=None,
                   **_) -> VerifyResult:
    return _bound_result("box-ibp", certify(net, x, y, threat, "ibp", "box", domain, deadline=deadline_of(timeout),
                                            device=device, memory_budget=memory_budget))


def verify_box_crown(net, x, y, threat, domain=DEFAULT_DOMAIN, timeout=None, device=None, memory_budget=None,
                     **_) -> VerifyResult:
    return _bound_result("box-crown", certify(net, x, y, threat, "crown", "box", domain, deadline=deadline_of(timeout),
                                              device=device, memory_budget=memory_budget))
