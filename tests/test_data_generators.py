"""The driving and action generators: deterministic by seed, in range, in the catalogue's shapes, and
with labels the pictures bear out (the steering follows the bend the road shows, the action class the
motion the digit makes), measured from the pixels alone."""
from __future__ import annotations

import numpy as np
import pytest

from stverify.data import DATASETS, dataset_spec, digit_actions, driving_clips, read_split
from stverify.errors import InputError


def _small(spec, n_test=8):
    return {**spec.args, "n_train": 4, "n_val": 2, "n_test": n_test}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_catalogue_entries_match_their_files(tmp_path, name):
    spec = dataset_spec(name)
    if spec.generator is digit_actions:
        pytest.importorskip("sklearn")
    split = read_split(spec.generator(tmp_path / "d.npz", **_small(spec)), "test", input_shape=spec.input_shape)
    assert split.task == spec.task and len(split) == 8
    x = split.inputs()
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05
    if spec.task == "classification":
        assert set(split.labels) == set(range(spec.n_classes))
    else:
        assert spec.n_classes is None and np.all(np.abs(split.labels) <= 1)
    with pytest.raises(InputError, match=r"unknown dataset 'nope'; known: \['action', 'driving'"):
        dataset_spec("nope")


@pytest.mark.parametrize("gen", ["driving", "action"])
def test_deterministic_by_seed(tmp_path, gen):
    if gen == "action":
        pytest.importorskip("sklearn")
    make = {"driving": lambda p, s: driving_clips(p, 6, 2, 2, size=10, channels=2, seed=s),
            "action": lambda p, s: digit_actions(p, 6, 2, 2, seed=s)}[gen]
    a, b, c = (make(tmp_path / f"{k}.npz", s).read_bytes() for k, s in (("a", 3), ("b", 3), ("c", 4)))
    assert a == b and a != c


@pytest.fixture(scope="module")
def road(tmp_path_factory):
    path = driving_clips(tmp_path_factory.mktemp("drv") / "d.npz", 4, 2, 400, frames=4, size=16, channels=3, seed=1)
    return read_split(path, "test")


def test_driving_file_is_float_channel_last_with_float_targets(road):
    assert road.layout.name == "nthwC" and road.layout.reason == "stated by the file"
    assert road.raw.dtype == np.float32 and road.raw.shape == (400, 4, 16, 16, 3) and road.labels.dtype == np.float64
    assert road.labels.min() < -0.8 and road.labels.max() > 0.8 and np.all(np.abs(road.labels) <= 1)


def test_steering_sign_follows_the_bend_in_the_last_frame(road):
    """Grey (unsaturated) pixels are road and lines: the mean column of the top three grey rows minus
    that of the bottom three is where the road bends, measured on the pixels."""
    last = road.inputs()[:, :, -1]
    grey = last.max(1) - last.min(1) < 0.06
    cols = np.arange(last.shape[-1])
    bend = []
    for g in grey:
        rows = [r for r in g if r.any()]
        bend.append(np.mean([cols[r].mean() for r in rows[:3]]) - np.mean([cols[r].mean() for r in rows[-3:]]))
    bend, y = np.array(bend), road.labels
    clear = np.abs(y) > 0.4
    assert clear.sum() > 100 and np.mean(np.sign(bend[clear]) == np.sign(y[clear])) > 0.97
    assert np.corrcoef(bend, y)[0, 1] > 0.9


def test_channels(tmp_path):
    one, two, three = (read_split(driving_clips(tmp_path / f"{c}.npz", 2, 1, 30, size=10, channels=c, seed=5))
                       for c in (1, 2, 3))
    assert [s.input_shape for s in (one, two, three)] == [(1, 4, 10, 10), (2, 4, 10, 10), (3, 4, 10, 10)]
    np.testing.assert_array_equal(one.labels, three.labels)  # the same scenes
    x = two.inputs()
    assert np.all(x[:, 1, 0] == np.float32(0.5))  # no change before the first frame
    change = 0.5 + np.diff(x[:, 0], axis=1) / 2  # channel 1 is the change of channel 0, unless clipped
    assert np.mean(np.abs(change - x[:, 1, 1:]) < 1e-6) > 0.99
    with pytest.raises(InputError, match="channels must be 1 .*, 2 .* or 3 .*, got 4"):
        driving_clips(tmp_path / "bad.npz", 1, 1, 1, channels=4)


def test_action_class_is_the_motion_the_pixels_show(tmp_path):
    """Zoom: the ink (intensity above the background) grows or shrinks; moving: its centroid travels
    right or left; the rule below, on pixels alone, agrees with the label."""
    pytest.importorskip("sklearn")
    split = read_split(digit_actions(tmp_path / "a.npz", 4, 2, 200, seed=2))
    x = split.inputs()[:, 0]  # N x T x H x W
    ink = np.clip(x - np.median(x, axis=(1, 2, 3), keepdims=True) - 0.1, 0, None)
    mass = ink.sum((2, 3))
    cx = (ink.sum(2) * np.arange(x.shape[-1])).sum(2) / mass
    growth, travel = np.log(mass[:, -1] / mass[:, 0]), cx[:, -1] - cx[:, 0]
    rule = np.where(np.abs(travel) > 3, np.where(travel > 0, 2, 3), np.where(growth > 0, 0, 1))
    assert np.bincount(split.labels).tolist() == [50] * 4
    assert np.mean(rule == split.labels) > 0.95


def test_action_splits_draw_on_disjoint_digits():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    from stverify.data.action import digit_pool

    train, val, test = (digit_pool(s) for s in ("train", "val", "test"))
    assert len(train) + len(val) + len(test) == len(load_digits().images)
    seen = {d.tobytes() for d in train}
    assert not seen & {d.tobytes() for d in test} and not seen & {d.tobytes() for d in val}
