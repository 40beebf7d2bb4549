import numpy as np
import pytest

from stverify.data import DATASETS, ensure_dataset, load_npz, load_sample, moving_video, organ_volumes
from stverify.errors import InputError

KEYS = tuple(f"{s}_{part}" for s in ("train", "val", "test") for part in ("images", "labels"))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return moving_video(tmp_path_factory.mktemp("d") / "video.npz", 40, 8, 12, frames=4, size=10, seed=3)


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    return organ_volumes(tmp_path_factory.mktemp("d") / "volume.npz", 16, 4, 8, seed=3)


@pytest.mark.parametrize("name,shape", [("video", (4, 10, 10)), ("volume", (28, 28, 28))])
def test_generated_file_has_medmnist_layout(request, name, shape):
    path = request.getfixturevalue(name)
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(KEYS) == sorted(
            f"{s}_{p}" for s in ("train", "val", "test") for p in ("images", "labels")
        )
        for split in ("train", "val", "test"):
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
            assert images.dtype == np.uint8 and images.shape[1:] == shape
            assert labels.dtype == np.uint8 and labels.shape == (len(images), 1)


@pytest.mark.parametrize("name,shape", [("video", (4, 10, 10)), ("volume", (28, 28, 28))])
def test_loader_values_and_shapes(request, name, shape):
    path = request.getfixturevalue(name)
    X, y = load_npz(path, "train")
    assert X.dtype == np.float64 and X.shape == (len(y), 1, *shape)
    assert y.dtype == np.int64 and set(y) <= {0, 1, 2, 3}
    assert 0.0 <= X.min() and X.max() <= 1.0 and X.max() > 0.5
    x, label = load_sample(path, "test", 5)
    Xt, yt = load_npz(path, "test")
    assert x.shape == (1, *shape) and x.dtype == np.float64 and type(label) is int
    np.testing.assert_array_equal(x, Xt[5])
    assert label == yt[5]


@pytest.mark.parametrize("gen", [moving_video, organ_volumes])
def test_deterministic_by_seed(tmp_path, gen):
    a = gen(tmp_path / "a.npz", 12, 4, 4, seed=7).read_bytes()
    b = gen(tmp_path / "b.npz", 12, 4, 4, seed=7).read_bytes()
    c = gen(tmp_path / "c.npz", 12, 4, 4, seed=8).read_bytes()
    assert a == b and a != c


@pytest.mark.parametrize("gen", [moving_video, organ_volumes])
def test_classes_balanced(tmp_path, gen):
    _, y = load_npz(gen(tmp_path / "d.npz", 4, 4, 41, seed=1), "test")
    assert np.bincount(y, minlength=4).tolist() == [11, 10, 10, 10]


def test_video_motion_tells_the_class(video):
    """The intensity centroid moves by >= 1 pixel per frame in the labelled direction."""
    X, y = load_npz(video, "train")
    w = np.clip(X[:, 0] - 0.3, 0, None)  # drop background and noise
    g = np.arange(10)
    cy = (w.sum(3) * g).sum(2) / w.sum((2, 3))
    cx = (w.sum(2) * g).sum(2) / w.sum((2, 3))
    dy, dx = (cy[:, -1] - cy[:, 0]) / 3, (cx[:, -1] - cx[:, 0]) / 3
    pred = np.where(np.abs(dx) > np.abs(dy), np.where(dx > 0, 0, 1), np.where(dy > 0, 2, 3))
    assert np.mean(pred == y) > 0.95
    assert np.median(np.maximum(np.abs(dx), np.abs(dy))) > 0.8


def test_hand_written_64_cube_medmnist_file(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 64, 64, 64), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 11, (n, 1), dtype=np.uint8)
    path = tmp_path / "organmnist3d_64.npz"
    np.savez_compressed(path, **arrays)
    X, y = load_npz(path, "train")
    assert X.shape == (3, 1, 64, 64, 64) and y.tolist() == arrays["train_labels"].ravel().tolist()
    np.testing.assert_array_equal(X[:, 0] * 255, arrays["train_images"])
    x, label = load_sample(str(path), "test", 1)
    assert x.shape == (1, 64, 64, 64) and label == arrays["test_labels"][1, 0]


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_errors(tmp_path, video):
    with pytest.raises(InputError, match="not found"):
        load_npz(tmp_path / "nope.npz")
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'val', 'test'\], got 'dev'"):
        load_npz(video, "dev")
    with pytest.raises(InputError, match=r"index 12 out of range .* 12 samples \(valid: 0..11\)"):
        load_sample(video, "test", 12)
    with pytest.raises(InputError, match="index -1 out of range"):
        load_sample(video, "test", -1)

    imgs, labels = np.zeros((2, 4, 5, 5), np.uint8), np.zeros((2, 1), np.uint8)
    path = _write(tmp_path / "nokey.npz", test_images=imgs, labels=labels)
    with pytest.raises(ValueError, match="has 'test_images' but no 'test_labels'") as e:
        load_npz(path)
    assert "['labels', 'test_images']" in str(e.value)

    path = _write(tmp_path / "int16.npz", test_images=imgs.astype(np.int16), test_labels=labels)
    with pytest.raises(ValueError, match=r"dtype int16; expected uint8 \(scaled by 1/255\) or floats"):
        load_npz(path)
    path = _write(tmp_path / "chan.npz", test_images=imgs[..., None, None], test_labels=labels)
    with pytest.raises(ValueError, match=r"shape \(2, 4, 5, 5, 1, 1\); expected N x T x H x W"):
        load_sample(path)
    path = _write(tmp_path / "lab.npz", test_images=imgs, test_labels=labels[:1])
    with pytest.raises(ValueError, match=r"'test_labels' .*shape \(1, 1\); expected one label per input: shape \(2,\) or \(2, 1\)"):
        load_npz(path)

    np.save(tmp_path / "single.npy", imgs)
    with pytest.raises(ValueError, match="single .npy array"):
        load_npz(tmp_path / "single.npy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an .npz archive"):
        load_npz(tmp_path / "junk.npz")


def test_generator_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="must move >= 1 pixel per frame"):
        moving_video(tmp_path / "v.npz", 1, 1, 1, frames=8, size=8)
    with pytest.raises(ValueError, match="n_classes"):
        organ_volumes(tmp_path / "v.npz", 1, 1, 1, n_classes=5)
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        ensure_dataset("nope", root=tmp_path)


def test_ensure_dataset_generates_once(tmp_path, monkeypatch):
    assert set(DATASETS) == {"video", "video8", "volume", "driving", "driving2", "action"}
    monkeypatch.setenv("STVERIFY_DATA", str(tmp_path))
    path = ensure_dataset("video")
    assert path.parent == tmp_path and path.name.startswith("video-")
    mtime = path.stat().st_mtime_ns
    assert ensure_dataset("video") == path and path.stat().st_mtime_ns == mtime
    X, y = load_npz(path, "test")
    assert X.shape == (300, 1, 4, 10, 10) and len(load_npz(path, "train")[1]) == 2000
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left
