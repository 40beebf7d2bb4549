"""The accuracy-vs-eps figure lays out one panel per threat family of each model."""
from __future__ import annotations

import matplotlib.image

from stverify.bench.plots import accuracy_eps


def _row(model: str, threat: str, eps: str, frac: float) -> dict:
    return {"model": model, "threat": threat, "eps": eps, "exact_robust_lo": frac, "exact_robust_hi": frac, "stbp": frac}


def test_models_of_other_shapes_share_the_columns_of_their_kinds(tmp_path):
    # the default patch of each model depends on its input shape: two family strings, one per model
    summary = [_row("video_model", f"anypatch:eps={e},len=2,h=4,w=4", e, 1.0) for e in ("4/255", "8/255")]
    summary += [_row("volume_model", f"anypatch:eps={e},len=7,h=7,w=7", e, 0.5) for e in ("4/255", "8/255")]
    records = [{"method": "stbp", "call": {"method": "stbp"}}]
    one_column = tmp_path / "one.png"
    accuracy_eps(records, summary[:2], one_column)
    both = tmp_path / "both.png"
    accuracy_eps(records, summary, both)
    # one column, as for one model: no empty panels for the other model's patch
    assert matplotlib.image.imread(both).shape[1] == matplotlib.image.imread(one_column).shape[1]
