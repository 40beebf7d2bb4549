"""The .npz loader on any layout: every layout, dtype and key convention round-trips; ambiguity, inputs
outside the domain, object arrays and missing keys are refused with one line naming what was found."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stverify.data import ensure_dataset, load_npz, load_sample, read_split
from stverify.errors import InputError

KEY_STYLES = {"medmnist": ("test_images", "test_labels"), "keras": ("x_test", "y_test"), "xy": ("x", "y"),
              "images": ("images", "labels"), "inputs": ("inputs", "targets")}


def _stored(x: np.ndarray, layout: str) -> np.ndarray:
    """x (N x C x T x H x W) as stored in ``layout``."""
    return {"nCthw": x, "nthwC": x.transpose(0, 2, 3, 4, 1), "nthw": x[:, 0]}[layout]


def _inputs(rng, shape, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(stored values of ``dtype``, the float64 inputs they stand for)."""
    if dtype == "uint8":
        raw = rng.integers(0, 256, shape, dtype=np.uint8)
        return raw, raw / 255.0
    raw = rng.uniform(0, 1, shape).astype(dtype)
    return raw, raw.astype(np.float64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 3), c=st.integers(1, 4), t=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4),
       dtype=st.sampled_from(["uint8", "float32", "float64"]), layout=st.sampled_from(["nCthw", "nthwC", "nthw"]),
       keys=st.sampled_from(sorted(KEY_STYLES)), regression=st.booleans(), column=st.booleans(),
       seed=st.integers(0, 2**16))
def test_every_layout_dtype_and_key_style_round_trips(tmp_path_factory, n, c, t, h, w, dtype, layout, keys, regression,
                                                      column, seed):
    c = 1 if layout == "nthw" else c
    rng = np.random.default_rng(seed)
    raw, x = _inputs(rng, (n, c, t, h, w), dtype)
    y = rng.normal(size=n) if regression else rng.integers(0, 5, n)
    xk, yk = KEY_STYLES[keys]
    path = tmp_path_factory.mktemp("rt") / "d.npz"
    np.savez(path, **{xk: _stored(raw, layout), yk: y[:, None] if column else y})

    def check(split):
        assert split.layout.name == layout and split.keys == (xk, yk) and split.input_shape == (c, t, h, w)
        np.testing.assert_array_equal(split.inputs(), x)
        np.testing.assert_array_equal(split.labels, y)
        assert split.task == ("regression" if regression else "classification")
        xi, yi = split.sample(n - 1)
        np.testing.assert_array_equal(xi, x[-1])
        assert yi == y[-1] and type(yi) is (float if regression else int)

    check(read_split(path, "test", layout=layout))  # as given
    if layout != "nthw" and c == t == h == w:  # both readings give the model's shape
        with pytest.raises(InputError, match=r"ambiguous; say which with --layout nCthw or --layout nthwC"):
            read_split(path, "test", input_shape=(c, t, h, w))
    else:
        check(read_split(path, "test", input_shape=(c, t, h, w)))


@pytest.mark.parametrize("stored,expect", [((2, 3, 8, 16, 16), "nCthw"), ((2, 8, 16, 16, 3), "nthwC"),
                                           ((2, 2, 8, 10, 10), "nCthw"), ((2, 8, 10, 10, 2), "nthwC")])
def test_without_a_model_the_short_axis_is_the_channel_axis(tmp_path, stored, expect):
    np.savez(tmp_path / "d.npz", x=np.zeros(stored, np.float32), y=np.zeros(2, int))
    split = read_split(tmp_path / "d.npz")
    assert split.layout.name == expect and "the only axis that can be channels" in str(split.layout)


def test_ambiguity_is_refused_naming_both_readings(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4, 16, 16, 3), np.float32), y=np.zeros(2, int))
    msg = (r"'x' in '.*d.npz' has shape \(2, 4, 16, 16, 3\), which reads as N x C x T x H x W \(nCthw: C x T x H x W = "
           r"\(4, 16, 16, 3\)\) or N x T x H x W x C \(nthwC: C x T x H x W = \(3, 4, 16, 16\)\): ambiguous; say which "
           r"with --layout nCthw or --layout nthwC")
    with pytest.raises(InputError, match=msg):
        read_split(tmp_path / "d.npz")
    assert read_split(tmp_path / "d.npz", input_shape=(3, 4, 16, 16)).layout.name == "nthwC"
    assert read_split(tmp_path / "d.npz", layout="nCthw").input_shape == (4, 16, 16, 3)
    with pytest.raises(InputError, match=r"nCthw: C x T x H x W = \(4, 16, 16, 3\).*the model expects C x T x H x W = "
                                         r"\(1, 4, 16, 16\)"):
        read_split(tmp_path / "d.npz", input_shape=(1, 4, 16, 16))
    with pytest.raises(InputError, match=r"holds inputs of shape \(4, 16, 16, 3\) \(C x T x H x W, read as nCthw\); "
                                         r"the model expects \(3, 4, 16, 16\)"):
        read_split(tmp_path / "d.npz", layout="nCthw", input_shape=(3, 4, 16, 16))


def test_a_layout_stated_by_the_file(tmp_path):
    x = np.random.default_rng(0).uniform(size=(2, 4, 4, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(2, int), layout=np.array("nthwC"))
    split = read_split(tmp_path / "d.npz")
    assert str(split.layout) == "nthwC (N x T x H x W x C; stated by the file)"
    np.testing.assert_array_equal(split.inputs(), x.transpose(0, 4, 1, 2, 3))
    with pytest.raises(InputError, match="--layout nCthw contradicts the file, whose 'layout' array says nthwC"):
        read_split(tmp_path / "d.npz", layout="nCthw")
    np.savez(tmp_path / "e.npz", x=x, y=np.zeros(2, int), layout=np.array("NCHW"))
    with pytest.raises(InputError, match="the file's 'layout' array says 'NCHW', which does not fit: it is none of"):
        read_split(tmp_path / "e.npz")
    np.savez(tmp_path / "f.npz", x=x[:, 0], y=np.zeros(2, int))
    with pytest.raises(InputError, match=r"--layout says 'nthwC', which does not fit: 'x' in .* has shape \(2, 4, 4, 4\) "
                                         r"\(fitting: nthw\)"):
        read_split(tmp_path / "f.npz", layout="nthwC")


def test_inputs_must_lie_in_the_stated_domain(tmp_path):
    x = np.linspace(-1, 1, 2 * 2 * 3 * 3).reshape(2, 2, 3, 3)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0.1, -0.2]))
    with pytest.raises(InputError, match=r"'x' in '.*d.npz' ranges over \[-1, 1\], outside the data domain \[0, 1\]; "
                                         r"state the model's input domain with --domain LO,HI"):
        read_split(tmp_path / "d.npz")
    np.testing.assert_array_equal(load_npz(tmp_path / "d.npz", domain=(-1, 1))[0], x[:, None])
    with pytest.raises(InputError, match=r"outside the data domain \[-0.5, 1\]"):
        load_npz(tmp_path / "d.npz", domain=(-0.5, 1))
    with pytest.raises(InputError, match="domain must be finite with lo < hi"):
        load_npz(tmp_path / "d.npz", domain=(1, -1))
    np.savez(tmp_path / "u.npz", x=np.array([[[[10, 255]]]], np.uint8), y=[0])
    with pytest.raises(InputError, match=r"ranges over \[0.0392157, 1\] \(uint8 scaled by 1/255\), outside the data "
                                         r"domain \[0.1, 1\]"):
        load_npz(tmp_path / "u.npz", domain=(0.1, 1))
    assert load_npz(tmp_path / "u.npz", domain=(0.0, 1.0))[0].max() == 1.0
    x[1, 1, 2, 0] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.array([0.1, -0.2]))
    with pytest.raises(InputError, match=r"'x' in .* has 1 non-finite value\(s\) \(NaN or Inf\), the first at "
                                         r"\(1, 1, 2, 0\)"):
        load_npz(tmp_path / "nan.npz", domain=(-1, 1))


def test_object_arrays_are_refused_never_unpickled(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2, int))
    with pytest.raises(InputError, match=r"array 'x' in '.*o.npz' holds Python objects \(a pickled object array\); "
                                         "stverify reads numeric arrays only and never unpickles data"):
        load_sample(tmp_path / "o.npz")


def test_keys(tmp_path):
    imgs, labels = np.zeros((2, 2, 3, 3), np.uint8), np.zeros(2, int)
    np.savez(tmp_path / "none.npz", pictures=imgs, classes=labels)
    with pytest.raises(InputError, match=r"has no inputs and labels for split 'val': found \['classes', 'pictures'\], "
                                         r"expected one of val_images/val_labels, x_val/y_val, x/y, images/labels, "
                                         r"inputs/targets"):
        load_npz(tmp_path / "none.npz", "val")
    np.savez(tmp_path / "two.npz", x=imgs, y=labels, images=imgs, labels=labels)
    with pytest.raises(InputError, match=r"several candidate arrays for split 'test' \(x/y, images/labels\): keep one"):
        load_npz(tmp_path / "two.npz")
    np.savez(tmp_path / "tt.npz", train_images=imgs, train_labels=labels, test_images=imgs, test_labels=labels)
    with pytest.raises(InputError, match=r"has no 'val' split \(it has train, test\)"):
        load_npz(tmp_path / "tt.npz", "val")
    np.savez(tmp_path / "plain.npz", inputs=imgs, targets=labels + 1)
    for split in ("train", "val", "test"):  # an unsplit pair serves every split
        assert read_split(tmp_path / "plain.npz", split).keys == ("inputs", "targets")
    with pytest.raises(InputError, match=r"split must be one of \['train', 'val', 'test'\], got 'dev'"):
        load_npz(tmp_path / "plain.npz", "dev")


def test_labels(tmp_path):
    imgs = np.zeros((3, 2, 3, 3), np.uint8)
    for y, match in ((np.array([0, -1, 2]), "negative label -1 \\(sample 1\\)"),
                     (np.array([True, False, True]), "dtype bool; expected integers \\(class labels\\) or floats"),
                     (np.array([0.1, np.inf, 0.2]), "non-finite regression target \\(sample 1\\)"),
                     (np.zeros((3, 2)), r"shape \(3, 2\); expected one label per input")):
        np.savez(tmp_path / "d.npz", x=imgs, y=y)
        with pytest.raises(InputError, match=match):
            load_npz(tmp_path / "d.npz")


def test_describe_says_what_was_read(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((5, 4, 10, 10, 2), np.float32), y=np.zeros(5, np.float32))
    assert read_split(tmp_path / "d.npz", input_shape=(2, 4, 10, 10)).describe() == (
        "d.npz [test]: 5 inputs of C x T x H x W = (2, 4, 10, 10) from 'x' as nthwC (N x T x H x W x C; the model's "
        "input shape (2, 4, 10, 10)) (float32 taken as is, domain [0, 1]); regression targets from 'y'")


def test_a_dataset_name_stands_for_its_file(tmp_path, monkeypatch):
    monkeypatch.setenv("STVERIFY_DATA", str(tmp_path))
    X, y = load_npz("video", "val")
    Xf, yf = load_npz(ensure_dataset("video"), "val")
    np.testing.assert_array_equal(X, Xf)
    np.testing.assert_array_equal(y, yf)
    assert read_split("video").path == str(ensure_dataset("video"))
