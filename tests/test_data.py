import gzip
import hashlib
import io
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from scratchgen.data import (
    TOY_DATASETS, BatchLoader, DatasetError, ToySampler, load_array, load_mnist, read_idx,
    split_holdout, toy_batch_at, toy_dataset,
)
from scratchgen.data import mnist as mnist_mod

# ---------------------------------------------------------------- IDX helpers

def idx_bytes(arr, magic=None):
    arr = np.asarray(arr, dtype=np.uint8)
    magic = (0x0800 | arr.ndim) if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write(path, data, gz):
    path = Path(str(path) + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_split(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n, dtype=np.uint8))


def write_split(folder, split="test", n=6, gz=True, images=None, labels=None):
    x, y = fake_split(n)
    x = x if images is None else images
    y = y if labels is None else labels
    names = mnist_mod.MNIST_FILES[split]
    return (write(folder / names[0], idx_bytes(x), gz), write(folder / names[1], idx_bytes(y), gz)), x, y


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def refuse(url, timeout=None):
        calls.append(url)
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(mnist_mod, "_urlopen", refuse)
    return calls


# ---------------------------------------------------------------- MNIST / IDX

@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, gz, no_network):
    _, x, y = write_split(tmp_path, gz=gz)
    xi, yi = load_mnist(tmp_path, split="test", check_md5=False)
    assert xi.dtype == np.uint8 and yi.dtype == np.uint8
    np.testing.assert_array_equal(xi, x)
    np.testing.assert_array_equal(yi, y)
    assert not no_network


def test_raw_files_pass_without_md5sums(tmp_path, no_network):
    # uncompressed files with no MD5SUMS: no checksum, strict IDX validation only
    _, x, _ = write_split(tmp_path, gz=False)
    np.testing.assert_array_equal(load_mnist(tmp_path, "test")[0], x)


def test_bad_magic(tmp_path):
    p = write(tmp_path / "f", idx_bytes(np.zeros((2, 28, 28)), magic=0x00000801), gz=False)
    with pytest.raises(DatasetError, match=r"bad IDX magic number 0x00000801, expected 0x00000803"):
        read_idx(p, expected_magic=0x00000803)
    garbage = write(tmp_path / "g", b"\xff\xfe\x00\x03" + b"\0" * 20, gz=False)
    with pytest.raises(DatasetError, match="not an IDX file"):
        read_idx(garbage)


def test_corrupted_magic_in_split(tmp_path, no_network):
    (imgs, _), _, _ = write_split(tmp_path, gz=False)
    data = bytearray(imgs.read_bytes())
    data[3] = 0x01
    imgs.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=f"{imgs.name}.*magic"):
        load_mnist(tmp_path, "test")


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_payload(tmp_path, gz, no_network):
    x, _ = fake_split(10)
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(x)[:-1234], gz)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(10)), gz)
    with pytest.raises(DatasetError, match=r"t10k-images.*expected 7840 bytes of pixel data.*found 6606"):
        load_mnist(tmp_path, "test", check_md5=False)


def test_truncated_header_and_gzip(tmp_path):
    p = write(tmp_path / "h", idx_bytes(np.zeros((2, 28, 28)))[:9], gz=False)
    with pytest.raises(DatasetError, match="truncated IDX header"):
        read_idx(p)
    gzp = tmp_path / "z.gz"
    gzp.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 28, 28))))[:-20])
    with pytest.raises(DatasetError, match=r"z\.gz.*gzip"):
        read_idx(gzp)


def test_trailing_bytes(tmp_path):
    p = write(tmp_path / "l", idx_bytes(np.zeros(5)) + b"\0", gz=False)
    with pytest.raises(DatasetError, match="expected 5 bytes of label data.*found 6"):
        read_idx(p)


def test_count_mismatch(tmp_path, no_network):
    x, _ = fake_split(6)
    write_split(tmp_path, gz=False, images=x, labels=np.zeros(5, np.uint8))
    with pytest.raises(DatasetError, match="6 images but .* 5 labels"):
        load_mnist(tmp_path, "test")


def test_wrong_image_shape(tmp_path, no_network):
    write_split(tmp_path, gz=False, images=np.zeros((6, 14, 14), np.uint8))
    with pytest.raises(DatasetError, match=r"\(N, 28, 28\).*\(6, 14, 14\)"):
        load_mnist(tmp_path, "test")


def test_gz_md5_mismatch_names_file(tmp_path, no_network):
    write_split(tmp_path, gz=True)  # not the official files -> official MD5 differs
    with pytest.raises(DatasetError, match=r"MD5 mismatch for .*t10k-images-idx3-ubyte\.gz.*"
                                           r"expected 9fb629c4189551a2d022fa330f9573f3"):
        load_mnist(tmp_path, "test")


def test_raw_md5sums_checked(tmp_path, no_network):
    (imgs, lbls), x, _ = write_split(tmp_path, gz=False)
    good = hashlib.md5(imgs.read_bytes()).hexdigest()
    (tmp_path / "MD5SUMS").write_text(
        f"{good}  {imgs.name}\n{'0' * 32}  {lbls.name}\n")
    with pytest.raises(DatasetError, match=f"MD5 mismatch for .*{lbls.name}.*expected {'0' * 32}"):
        load_mnist(tmp_path, "test")
    (tmp_path / "MD5SUMS").write_text(
        f"{good}  {imgs.name}\n{hashlib.md5(lbls.read_bytes()).hexdigest()} *{lbls.name}\n")
    np.testing.assert_array_equal(load_mnist(tmp_path, "test")[0], x)


def test_offline_error_names_files_and_folder(tmp_path, no_network):
    folder = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as info:
        load_mnist(folder, "train")
    msg = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert str(folder) in msg
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert "network disabled" in msg
    assert len(no_network) == 2 * len(mnist_mod.MIRRORS)  # every mirror tried for both files
    assert not any(folder.glob("*.part"))


def test_offline_error_says_no_network_and_both_spellings(tmp_path, monkeypatch):
    import socket

    def dns_fails(url, timeout=None):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(mnist_mod, "_urlopen", dns_fails)
    with pytest.raises(DatasetError) as info:
        load_mnist(tmp_path / "nowhere", "test")
    msg = str(info.value)
    assert "no network" in msg and "Name or service" not in msg and "Errno" not in msg
    assert "--data-dir <folder> (command line)" in msg and "root=<folder> (Python)" in msg


def test_download_false_no_network(tmp_path, no_network):
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist(tmp_path, "test", download=False)
    assert not no_network


def test_split_only_folder(tmp_path, no_network):
    _, x, _ = write_split(tmp_path, split="test", gz=False)
    assert load_mnist(tmp_path, "test")[0].shape == x.shape
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
        load_mnist(tmp_path, "train")


def test_download_verifies_and_writes_atomically(tmp_path, monkeypatch):
    x, y = fake_split(4)
    payload = {"t10k-images-idx3-ubyte.gz": gzip.compress(idx_bytes(x)),
               "t10k-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(y))}
    md5s = dict(mnist_mod.MNIST_MD5)
    md5s.update({k: hashlib.md5(v).hexdigest() for k, v in payload.items()})
    monkeypatch.setattr(mnist_mod, "MNIST_MD5", md5s)
    seen = []

    def fake_urlopen(url, timeout=None):
        seen.append(url)
        if url.startswith(mnist_mod.MIRRORS[0]):  # first mirror serves garbage
            return io.BytesIO(b"not mnist")
        return io.BytesIO(payload[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(mnist_mod, "_urlopen", fake_urlopen)
    xi, yi = load_mnist(tmp_path / "dl", "test")
    np.testing.assert_array_equal(xi, x)
    np.testing.assert_array_equal(yi, y)
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == sorted(payload)
    assert len(seen) == 4


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("SCRATCHGEN_DATA", str(tmp_path))
    assert mnist_mod.default_root() == tmp_path / "mnist"
    monkeypatch.delenv("SCRATCHGEN_DATA")
    assert mnist_mod.default_root() == Path.home() / ".cache" / "scratchgen" / "mnist"


def test_bad_split():
    with pytest.raises(ValueError, match="train, test"):
        load_mnist("/nonexistent", split="val")


def test_real_mnist_test_split(no_network, mnist_dir):
    x, y = load_mnist(mnist_dir, split="test", download=False)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and set(np.unique(y)) == set(range(10))
    assert x.mean() == pytest.approx(33.79, abs=0.05)  # test split (train split: 33.32)
    assert y[:5].tolist() == [7, 2, 1, 0, 4]


def test_real_mnist_training_split_recompressed(no_network, mnist_dir):
    """The shared training files are recompressed: their .gz MD5 is not the official one, their
    decompressed content's is."""
    assert mnist_mod.MNIST_MD5["train-images-idx3-ubyte.gz"] != hashlib.md5(
        (mnist_dir / "train-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    x, y = load_mnist(mnist_dir, split="train", download=False)
    assert x.shape == (60000, 28, 28) and y.shape == (60000,)
    assert x.mean() == pytest.approx(33.32, abs=0.05)
    assert y[:5].tolist() == [5, 0, 4, 1, 9]


def _repacked_test_split(mnist_dir, folder, flip_content_byte=None):
    """The official test split, decompressed and gzipped again at another level (so only its
    content MD5 is official), optionally with one content byte flipped."""
    for name in mnist_mod.MNIST_FILES["test"]:
        data = bytearray(gzip.decompress((mnist_dir / (name + ".gz")).read_bytes()))
        if flip_content_byte is not None and name.startswith("t10k-images"):
            data[flip_content_byte] ^= 0x01
        (folder / (name + ".gz")).write_bytes(gzip.compress(bytes(data), compresslevel=1))


def test_repacked_gz_accepted_by_its_content_md5(tmp_path, no_network, mnist_dir):
    _repacked_test_split(mnist_dir, tmp_path)
    x, y = load_mnist(tmp_path, split="test", download=False)
    np.testing.assert_array_equal(x, load_mnist(mnist_dir, split="test", download=False)[0])


def test_tampered_repacked_gz_refused_naming_both_checks(tmp_path, no_network, mnist_dir):
    _repacked_test_split(mnist_dir, tmp_path, flip_content_byte=16 + 28 * 28 * 5 + 14)
    with pytest.raises(DatasetError) as info:
        load_mnist(tmp_path, split="test", download=False)
    msg = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "its bytes have MD5" in msg
    assert "decompressed content has MD5" in msg and mnist_mod.MNIST_CONTENT_MD5[
        "t10k-images-idx3-ubyte"] in msg


@pytest.mark.parametrize("split", ["test", "train"])
def test_one_flipped_byte_in_a_shared_gz_is_refused(tmp_path, no_network, split, mnist_dir):
    """test: the official .gz; train: the recompressed one, accepted by its content MD5 only."""
    images = mnist_mod.MNIST_FILES[split][0]
    for name in mnist_mod.MNIST_FILES[split]:
        raw = bytearray((mnist_dir / (name + ".gz")).read_bytes())
        if name == images:
            raw[len(raw) // 2] ^= 0x01
        (tmp_path / (name + ".gz")).write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=f"{images}.gz.*(corrupted|MD5 mismatch)"):
        load_mnist(tmp_path, split=split, download=False)


# ---------------------------------------------------------------- toy distributions

def test_toy_registry():
    assert TOY_DATASETS == ("8gaussians", "25gaussians", "swissroll", "ring", "checkerboard")
    with pytest.raises(ValueError, match="8gaussians.*checkerboard"):
        toy_dataset("moons")


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_toy_seeding(name):
    d = toy_dataset(name)
    a = d.sample(500, seed=3)
    assert a.shape == (500, 2) and a.dtype == np.float64
    np.testing.assert_array_equal(a, d.sample(500, seed=3))
    np.testing.assert_array_equal(a, d.sample(500, rng=np.random.default_rng(3)))
    assert not np.array_equal(a, d.sample(500, seed=4))


@pytest.mark.parametrize("name,k,radius", [("8gaussians", 8, None), ("25gaussians", 25, None)])
def test_gaussian_mixtures(name, k, radius):
    d = toy_dataset(name)
    assert d.modes.shape == (k, 2)
    x = d.sample(20000, seed=0)
    dist = np.linalg.norm(x[:, None] - d.modes[None], axis=-1)
    assert dist.min(1).max() < 5 * d.mode_std  # every sample near a mode
    counts = np.bincount(dist.argmin(1), minlength=k)
    assert counts.min() > 0.7 * 20000 / k  # roughly equal weights
    resid = x - d.modes[dist.argmin(1)]
    assert resid.std() == pytest.approx(d.mode_std, rel=0.03)


def test_mode_geometry():
    g8 = toy_dataset("8gaussians")
    np.testing.assert_allclose(np.linalg.norm(g8.modes, axis=1), 2 / 1.414)
    assert g8.mode_std == pytest.approx(0.02 / 1.414)
    g25 = toy_dataset("25gaussians")
    np.testing.assert_allclose(np.unique(g25.modes[:, 0]), np.arange(-4, 5, 2) / 2.828)
    assert g25.mode_std == pytest.approx(0.05 / 2.828)


def test_checkerboard_support():
    d = toy_dataset("checkerboard")
    x = d.sample(20000, seed=1)
    assert np.all((x >= -4) & (x < 4))
    assert np.all((np.floor(x[:, 0] / 2) + np.floor(x[:, 1] / 2)) % 2 == 0)
    assert d.is_black(x).all()
    assert np.all(d.log_density(x) == pytest.approx(-np.log(32)))
    assert np.isneginf(d.log_density(np.array([[1.0, -1.0], [5.0, 5.0]]))).all()
    assert abs(x.mean(0)).max() < 0.05


def test_ring():
    d = toy_dataset("ring")
    x = d.sample(20000, seed=2)
    r = np.hypot(*x.T)
    assert r.mean() == pytest.approx(d.radius, abs=0.01)
    assert r.std() == pytest.approx(d.width, rel=0.05)
    theta = np.arctan2(x[:, 1], x[:, 0])
    assert np.histogram(theta, 8)[0].min() > 0.9 * 20000 / 8


@pytest.mark.parametrize("name", ["8gaussians", "25gaussians", "ring", "checkerboard"])
@pytest.mark.slow
def test_log_density_integrates_to_one(name):
    d = toy_dataset(name)
    n = 1000
    g = -4 + (np.arange(n) + 0.5) * 8 / n
    gx, gy = np.meshgrid(g, g)
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    mass = np.exp(d.log_density(pts)).sum() * (8 / n) ** 2
    assert mass == pytest.approx(1.0, abs=2e-3)


def test_swissroll():
    d = toy_dataset("swissroll")
    x = d.sample(20000, seed=0)
    bound = (4.5 * np.pi + 6 * 0.25) / 7.5
    assert np.abs(x).max() < bound
    r = np.hypot(*x.T) * 7.5
    assert r.min() > 1.5 * np.pi - 1.5 and r.max() < 4.5 * np.pi + 1.5
    with pytest.raises(NotImplementedError, match="swissroll"):
        d.log_density(x)


# ---------------------------------------------------------------- user arrays

def test_load_array_npy_npz(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.save(tmp_path / "a.npy", a)
    np.testing.assert_array_equal(load_array(tmp_path / "a.npy"), a)
    np.savez(tmp_path / "one.npz", x=a)
    np.testing.assert_array_equal(load_array(tmp_path / "one.npz"), a)
    np.savez(tmp_path / "two.npz", x=a, pts=np.zeros((5, 2)))
    with pytest.raises(DatasetError, match="2 arrays.*x.*pts.*:KEY"):
        load_array(tmp_path / "two.npz")
    assert load_array(tmp_path / "two.npz", key="pts").shape == (5, 2)
    with pytest.raises(DatasetError, match="no array 'y'.*holds x, pts"):
        load_array(tmp_path / "two.npz", key="y")


def test_load_array_picks_an_npz_array_with_colon_key(tmp_path, monkeypatch):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.savez(tmp_path / "two.npz", x=a, pts=np.ones((5, 2)))
    two = tmp_path / "two.npz"
    with pytest.raises(DatasetError) as e:
        load_array(two)
    assert str(e.value) == (f"{two}: .npz holds 2 arrays (x, pts); choose one as {two}:KEY, "
                            f"e.g. {two}:x")
    np.testing.assert_array_equal(load_array(f"{two}:x"), a)
    assert load_array(f"{two}:pts").shape == (5, 2)
    monkeypatch.chdir(tmp_path)
    assert load_array("two.npz:pts").shape == (5, 2)
    with pytest.raises(DatasetError, match=r"two\.npz: no array 'y'.*holds x, pts.*two\.npz:KEY"):
        load_array("two.npz:y")
    with pytest.raises(ValueError, match="empty key"):
        load_array("two.npz:")
    with pytest.raises(ValueError, match="two keys"):
        load_array("two.npz:x", key="pts")
    np.save(tmp_path / "a.npy", a)
    with pytest.raises(ValueError, match="a .npy file holds a single array"):
        load_array("a.npy:x")
    with pytest.raises(FileNotFoundError, match="none.npz"):
        load_array("none.npz:x")
    np.save(tmp_path / "odd:name.npy", a)  # an existing file is taken as it is named
    np.testing.assert_array_equal(load_array("odd:name.npy"), a)


def test_load_array_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_array(tmp_path / "missing.npy")
    (tmp_path / "a.csv").write_text("1,2")
    with pytest.raises(ValueError, match=r"a\.csv.*\.npy, \.npz"):
        load_array(tmp_path / "a.csv")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"bad\.npy"):
        load_array(tmp_path / "bad.npy")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"bad\.npz"):
        load_array(tmp_path / "bad.npz")
    np.save(tmp_path / "trunc.npy", np.zeros((100, 2)))
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "trunc.npy").read_bytes()[:300])
    with pytest.raises(DatasetError, match=r"trunc\.npy"):
        load_array(tmp_path / "trunc.npy")
    np.save(tmp_path / "s.npy", np.array([["a", "b"]]))
    with pytest.raises(DatasetError, match="numeric.*<U1"):
        load_array(tmp_path / "s.npy")
    np.save(tmp_path / "o.npy", np.array([[None]], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match=r"o\.npy.*object"):
        load_array(tmp_path / "o.npy")
    np.save(tmp_path / "v.npy", np.zeros(5))
    with pytest.raises(DatasetError, match=r"shape \(5,\)"):
        load_array(tmp_path / "v.npy")


# ---------------------------------------------------------------- batches

def test_batch_shapes_and_preprocess():
    x = np.array([[[0, 127], [128, 255]]] * 10, dtype=np.uint8)  # (10, 2, 2)
    y = np.arange(10, dtype=np.uint8)
    for mode, expect in [("unit", [[0, 127 / 255], [128 / 255, 1]]),
                         ("symmetric", [[-1, 2 * 127 / 255 - 1], [2 * 128 / 255 - 1, 1]]),
                         ("binarize-fixed", [[0, 0], [1, 1]])]:
        bx, by = BatchLoader(x, 4, preprocess=mode, labels=y).batch_at(0)
        assert bx.shape == (4, 1, 2, 2) and bx.dtype == np.float32
        assert by.dtype == np.int64
        np.testing.assert_allclose(bx[0, 0], expect, atol=1e-6)
    pts = np.random.default_rng(0).normal(size=(10, 2))
    b = BatchLoader(pts, 5, preprocess="none", shuffle=False).batch_at(1)
    np.testing.assert_allclose(b, pts[5:].astype(np.float32))


def test_batch_determinism_and_resume():
    x = np.random.default_rng(0).integers(0, 256, (50, 3, 3), dtype=np.uint8)
    a = BatchLoader(x, 8, seed=5, labels=np.arange(50))
    b = BatchLoader(x, 8, seed=5, labels=np.arange(50))
    assert len(a) == 6
    for step in (0, 5, 6, 13):
        np.testing.assert_array_equal(a.batch_at(step)[1], b.batch_at(step)[1])
    # shuffle is per epoch, without replacement within an epoch
    e0 = np.concatenate([a.get_batch(0, i)[1] for i in range(6)])
    e1 = np.concatenate([a.get_batch(1, i)[1] for i in range(6)])
    assert len(set(e0)) == 48 and not np.array_equal(e0, e1)
    assert not np.array_equal(e0, BatchLoader(x, 8, seed=6, labels=np.arange(50)).epoch_order(0)[:48])
    # global batch k is batch k % len of epoch k // len
    np.testing.assert_array_equal(a.batch_at(7)[1], a.get_batch(1, 1)[1])


def test_drop_last_false_and_no_shuffle():
    x = np.zeros((10, 2))
    ld = BatchLoader(x, 4, drop_last=False, shuffle=False, preprocess="none", labels=np.arange(10))
    sizes = [len(ld.get_batch(0, i)[1]) for i in range(len(ld))]
    assert sizes == [4, 4, 2]
    np.testing.assert_array_equal(ld.batch_at(5)[1], [8, 9])
    with pytest.raises(ValueError, match="batch_size 20 > 10"):
        BatchLoader(x, 20, preprocess="none")
    with pytest.raises(ValueError, match=r"\[0, 1\].*\[-1"):
        BatchLoader(np.full((4, 2, 2), -1.0), 2, preprocess="unit")
    with pytest.raises(ValueError, match="preprocess must be one of"):
        BatchLoader(x, 2, preprocess="bin")
    with pytest.raises(ValueError, match=r"labels must have shape \(10,\)"):
        BatchLoader(x, 2, preprocess="none", labels=np.arange(9))


def test_dynamic_binarisation():
    # one column per intensity, many examples: the Bernoulli mean must match pixel/255
    levels = np.array([0, 32, 64, 128, 200, 255], dtype=np.uint8)
    x = np.tile(levels, (4000, 1))[:, None, :]  # (4000, 1, 6) "images"
    ld = BatchLoader(x, 4000, preprocess="binarize-dynamic", seed=1)
    b0, b1 = ld.batch_at(0), ld.batch_at(1)  # epoch 0 and epoch 1
    assert b0.shape == (4000, 1, 1, 6)
    assert set(np.unique(b0)) <= {0.0, 1.0}
    np.testing.assert_allclose(b0.mean(axis=(0, 1, 2)), levels / 255, atol=0.025)
    assert b0[:, 0, 0, 0].sum() == 0 and b0[:, 0, 0, -1].min() == 1
    assert not np.array_equal(b0, b1)  # fresh draw per epoch
    np.testing.assert_array_equal(b0, BatchLoader(x, 4000, preprocess="binarize-dynamic", seed=1).batch_at(0))
    # per-example draws differ within a batch (same pixels, different samples)
    assert not np.all(b0[:, 0, 0, 3] == b0[0, 0, 0, 3])


def test_dynamic_binarisation_real_mnist(mnist_dir):
    x, _ = load_mnist(mnist_dir, split="test", download=False)
    ld = BatchLoader(x[:2000], 1000, preprocess="binarize-dynamic", seed=0)
    b = ld.batch_at(0)
    assert b.shape == (1000, 1, 28, 28)
    ref = x[ld.epoch_order(0)[:1000]] / 255.0
    assert b.mean() == pytest.approx(ref.mean(), abs=2e-3)


def test_toy_sampler():
    s = ToySampler("8gaussians", 64, seed=3)
    b5 = s.batch_at(5)
    assert b5.shape == (64, 2) and b5.dtype == np.float32
    np.testing.assert_array_equal(b5, toy_batch_at("8gaussians", 64, 5, seed=3))
    np.testing.assert_array_equal(b5, ToySampler("8gaussians", 64, seed=3).batch_at(5))
    assert not np.array_equal(b5, s.batch_at(6))
    assert not np.array_equal(b5, toy_batch_at("8gaussians", 64, 5, seed=4))


def test_split_holdout():
    x, y = np.arange(10)[:, None], np.arange(10)
    tx, ty, hx, hy = split_holdout(x, y, 3)
    assert tx[:, 0].tolist() == ty.tolist() == list(range(7))
    assert hx[:, 0].tolist() == hy.tolist() == [7, 8, 9]
    tx, ty, hx, hy = split_holdout(x, None, 0)
    assert len(tx) == 10 and len(hx) == 0 and ty is None and hy is None
    with pytest.raises(ValueError, match="holdout=10.*10 examples"):
        split_holdout(x, y, 10)
    with pytest.raises(ValueError, match="holdout must be >= 0"):
        split_holdout(x, y, -1)
