"""Checkpoints: exact round trips of every supported type, atomic writes, and clear errors for
files that are not (whole) scratchgen checkpoints and for objects that cannot be saved."""
import json
import math
import os
import stat
import zipfile

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import nn


def everything():
    rng = np.random.default_rng(0)
    rng.normal(size=3)  # a state that is not the initial one
    return {
        "tensor32": sg.tensor(np.arange(6, dtype=np.float32).reshape(2, 3)),
        "tensor64_grad": sg.tensor(np.array([0.1, -2.5]), requires_grad=True),
        "param": nn.Parameter(np.ones((2, 2), dtype=np.float32)),
        "backend": sg.backend.xp.linspace(0, 1, 5),
        "numpy": {"f16": np.array([1.5, -2], dtype=np.float16),
                  "u8": np.arange(4, dtype=np.uint8), "i64": np.array([-(2 ** 62), 7]),
                  "bool": np.array([True, False]), "str": np.array(["a", "bc"]),
                  "empty": np.zeros((0, 3)), "scalar0d": np.array(3.5)},
        "np_scalars": [np.float32(1.25), np.int64(-3), np.bool_(True)],
        "plain": {"int": 3, "neg": -7, "big": 2 ** 130 + 1, "float": 0.1, "nan": math.nan,
                  "inf": -math.inf, "str": "vae \u03b2=4", "true": True, "none": None,
                  "empty_list": [], "empty_dict": {}, "tuple": (1, (2.0, "x"), [None])},
        7: "int key", None: "none key", 2.5: "float key", "nested": [[{"deep": (np.ones(2),)}]],
        "rng_state": rng.bit_generator.state,
        "rng": np.random.Generator(np.random.PCG64(5)),
        "mt": np.random.Generator(np.random.MT19937(5)),
    }


def test_round_trip_of_every_supported_type(tmp_path):
    obj = everything()
    path = tmp_path / "all.ckpt"
    sg.save(obj, path)
    assert os.listdir(tmp_path) == ["all.ckpt"]  # exact path, no suffix added, no temp file
    back = sg.load(str(path))
    assert list(back) == list(obj)
    t = back["tensor32"]
    assert type(t) is sg.Tensor and t.dtype == np.float32 and not t.requires_grad
    np.testing.assert_array_equal(t.numpy(), obj["tensor32"].numpy())
    g = back["tensor64_grad"]
    assert g.dtype == np.float64 and g.requires_grad and g.tolist() == [0.1, -2.5]
    assert isinstance(back["param"], nn.Parameter) and back["param"].requires_grad
    assert sg.backend.is_array(back["backend"])
    np.testing.assert_array_equal(sg.backend.to_numpy(back["backend"]),
                                  sg.backend.to_numpy(obj["backend"]))
    for k, v in obj["numpy"].items():
        b = back["numpy"][k]
        assert isinstance(b, np.ndarray) and b.dtype == v.dtype and b.shape == v.shape
        np.testing.assert_array_equal(b, v)
    for a, b in zip(back["np_scalars"], obj["np_scalars"]):
        assert type(a) is type(b) and a == b
    p = back["plain"]
    assert p["big"] == 2 ** 130 + 1 and type(p["int"]) is int and p["neg"] == -7
    assert p["float"] == 0.1 and math.isnan(p["nan"]) and p["inf"] == -math.inf
    assert p["str"] == "vae \u03b2=4" and p["true"] is True and p["none"] is None
    assert p["empty_list"] == [] and p["empty_dict"] == {}
    assert p["tuple"] == (1, (2.0, "x"), [None]) and isinstance(p["tuple"][1], tuple)
    assert back[7] == "int key" and back[None] == "none key" and back[2.5] == "float key"
    np.testing.assert_array_equal(back["nested"][0][0]["deep"][0], np.ones(2))
    # generator states, with their 128-bit integers, come back exactly
    assert back["rng_state"] == obj["rng_state"]
    for name in ("rng", "mt"):
        np.testing.assert_array_equal(back[name].random(5), obj[name].random(5))
    restored = np.random.default_rng()
    restored.bit_generator.state = back["rng_state"]
    fresh = np.random.default_rng(0)
    fresh.normal(size=3)
    np.testing.assert_array_equal(restored.normal(size=4), fresh.normal(size=4))


def test_model_and_optimizer_checkpoint_loads_into_fresh_objects(tmp_path):
    sg.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 1))
    opt = sg.optim.Adam(net.parameters(), lr=0.01)
    x = sg.tensor(np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32))
    for _ in range(2):
        opt.zero_grad()
        net(x).sum().backward()
        opt.step()
    sg.save({"model": net.state_dict(), "opt": opt.state_dict(), "step": 2}, tmp_path / "c")
    ck = sg.load(tmp_path / "c")
    assert all(sg.backend.is_array(v) for v in ck["model"].values())
    net2 = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 1))
    net2.load_state_dict(ck["model"])
    opt2 = sg.optim.Adam(net2.parameters())
    opt2.load_state_dict(ck["opt"])
    for n in (net, net2):
        n.eval()
    np.testing.assert_array_equal(net(x).numpy(), net2(x).numpy())
    for m in (net, net2):
        m.train()
    for n, o in ((net, opt), (net2, opt2)):
        o.zero_grad()
        n(x).sum().backward()
        o.step()
    for a, b in zip(net.parameters(), net2.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_failed_write_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    sg.save({"v": 1, "w": np.ones(3)}, path)

    def broken_replace(src, dst):
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk vanished"):
        sg.save({"v": 2, "w": np.zeros(1000)}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    back = sg.load(path)
    assert back["v"] == 1 and back["w"].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(TypeError):  # an error while encoding writes nothing at all
        sg.save({"v": 3, "bad": object()}, path)
    assert os.listdir(tmp_path) == ["ckpt.npz"] and sg.load(path)["v"] == 1
    sg.save({"v": 4}, path)  # overwriting works
    assert sg.load(path) == {"v": 4}


def test_write_is_fsynced_then_renamed_then_directory_fsynced(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        assert os.path.dirname(os.path.abspath(src)) == os.path.dirname(os.path.abspath(dst))
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    sg.save({"a": np.ones(2)}, tmp_path / "c.npz")
    assert calls == ["fsync file", "replace", "fsync dir"]


def test_truncated_file(tmp_path):
    path = tmp_path / "trunc.npz"
    sg.save({"w": np.arange(1000.0), "s": "x"}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(sg.CheckpointError, match="trunc.npz.*truncated") as e:
        sg.load(path)
    assert isinstance(e.value, OSError) and e.value.path == str(path)


def test_corrupted_array_bytes(tmp_path):
    path = tmp_path / "bad.npz"
    sg.save({"w": np.zeros(1000)}, path)
    data = bytearray(path.read_bytes())
    i = data.index(b"\x00" * 800)  # inside the array's data
    data[i + 100:i + 110] = b"\xff" * 10
    path.write_bytes(bytes(data))
    with pytest.raises(sg.CheckpointError, match="bad.npz.*corrupted"):
        sg.load(path)


def test_foreign_files(tmp_path):
    foreign = tmp_path / "other.npz"
    np.savez(foreign, weights=np.ones(3))
    with pytest.raises(sg.CheckpointError, match="other.npz.*not a scratchgen checkpoint"):
        sg.load(foreign)
    npy = tmp_path / "arr.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(sg.CheckpointError, match="arr.npy.*single .npy array"):
        sg.load(npy)
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a zip at all")
    with pytest.raises(sg.CheckpointError, match="notes.txt.*not a zip"):
        sg.load(text)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(sg.CheckpointError, match="'.*empty'.*the file is empty"):
        sg.load(empty)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        sg.load(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="directory .*nowhere.* does not exist"):
        sg.save({}, tmp_path / "nowhere" / "c.npz")


def test_newer_version_and_broken_structure(tmp_path):
    def write(path, **entries):
        with zipfile.ZipFile(path, "w") as z:
            for k, v in entries.items():
                with z.open(k + ".npy", "w") as f:
                    np.lib.format.write_array(f, np.asarray(v))

    magic = "scratchgen-checkpoint"
    write(tmp_path / "v9.npz", __magic__=magic, __version__=9, __structure__="null")
    with pytest.raises(sg.CheckpointError, match="version 9"):
        sg.load(tmp_path / "v9.npz")
    write(tmp_path / "dangling.npz", __magic__=magic, __version__=1,
          __structure__=json.dumps({"t": "array", "key": "a0", "device": False}))
    with pytest.raises(sg.CheckpointError, match="missing entry 'a0'"):
        sg.load(tmp_path / "dangling.npz")
    write(tmp_path / "garbled.npz", __magic__=magic, __version__=1, __structure__="{not json")
    with pytest.raises(sg.CheckpointError, match="garbled.npz"):
        sg.load(tmp_path / "garbled.npz")


def test_unsupported_objects_name_their_place(tmp_path):
    path = tmp_path / "x.npz"
    with pytest.raises(TypeError, match=r"type set at obj\['model'\]\['layers'\]\[1\]"):
        sg.save({"model": {"layers": [1, {2, 3}]}}, path)
    with pytest.raises(TypeError, match=r"Linear at obj\['net'\]; save its state_dict"):
        sg.save({"net": nn.Linear(2, 2)}, path)
    with pytest.raises(TypeError, match=r"dict key of type tuple .* at obj\['a'\]"):
        sg.save({"a": {(1, 2): 3}}, path)
    with pytest.raises(TypeError, match=r"object array at obj\[0\]"):
        sg.save([np.array([None, 1])], path)
    assert not path.exists() and os.listdir(tmp_path) == []


# ---- PyTorch's format: read without torch's unpickler, written for torch.load ------------
def _nets(torch_nn, nn_):
    return nn_.Sequential(nn_.Conv2d(1, 2, 3), nn_.BatchNorm2d(2), nn_.ReLU(), nn_.Flatten(),
                          nn_.Linear(2 * 4 * 4, 3))


def test_torch_saved_state_dict_loads_into_the_same_module(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = _nets(torch, torch.nn)
    theirs(torch.randn(8, 1, 6, 6))               # running statistics move off their init
    torch.save(theirs.state_dict(), tmp_path / "w.pt")
    sd = sg.load(tmp_path / "w.pt")
    assert sd["1.num_batches_tracked"].shape == () and sd["1.num_batches_tracked"].item() == 1
    ours = _nets(sg, sg.nn)
    ours.load_state_dict(sd)
    ours.eval(), theirs.eval()
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(ours(sg.tensor(x)).numpy(),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_torch_views_parameters_and_nested_values_load(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"t": torch.arange(6.0).reshape(2, 3).t(), "p": torch.nn.Parameter(torch.ones(2)),
                "v": torch.arange(10.0, dtype=torch.float64)[3:7:2], "n": [1, 2.5, None, "s"]},
               tmp_path / "m.pt")
    m = sg.load(tmp_path / "m.pt")
    assert m["t"].tolist() == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    assert isinstance(m["p"], sg.nn.Parameter) and m["p"].requires_grad
    assert m["v"].tolist() == [3.0, 5.0] and m["v"].dtype == np.float64
    assert m["n"] == [1, 2.5, None, "s"]


def test_scratchgen_torch_format_is_read_by_torch_load_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    sg.manual_seed(0)
    ours = _nets(sg, sg.nn)
    ours(sg.randn(8, 1, 6, 6))
    sg.save(ours.state_dict(), tmp_path / "w.pt", format="torch")
    sd = torch.load(tmp_path / "w.pt", weights_only=True)
    theirs = _nets(torch, torch.nn)
    theirs.load_state_dict(sd)
    ours.eval(), theirs.eval()
    x = np.random.default_rng(1).standard_normal((2, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(theirs(torch.tensor(x)).detach().numpy(),
                               ours(sg.tensor(x)).numpy(), rtol=1e-5, atol=1e-6)
    extra = {"step": 2 ** 40, "neg": -3, "xs": [1.5, None, True, ("a", 2)],
             "i": sg.tensor([1, 2], dtype="int64"), "e": np.zeros((0, 3))}
    sg.save(extra, tmp_path / "x.pt", format="torch")
    back = torch.load(tmp_path / "x.pt", weights_only=True)
    assert back["step"] == 2 ** 40 and back["neg"] == -3 and back["xs"] == [1.5, None, True,
                                                                           ("a", 2)]
    assert back["i"].tolist() == [1, 2] and back["e"].shape == (0, 3)
    assert sg.load(tmp_path / "x.pt")["step"] == 2 ** 40      # and scratchgen reads its own


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch PWNED",))


def test_a_torch_checkpoint_carrying_code_is_refused_before_anything_runs(tmp_path,
                                                                          monkeypatch):
    import pickle
    import zipfile
    monkeypatch.chdir(tmp_path)
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"w": _Evil()}, protocol=2))
        z.writestr("evil/version", "3\n")
    with pytest.raises(sg.CheckpointError, match=r"names (posix|os|nt)\.system.*refused"):
        sg.load(tmp_path / "evil.pt")
    assert not (tmp_path / "PWNED").exists()


def test_corrupted_torch_zip_is_a_clear_error(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(100)}, tmp_path / "w.pt")
    raw = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(sg.CheckpointError, match="cut.pt.*(corrupted|truncated)"):
        sg.load(tmp_path / "cut.pt")
    i = raw.index(b"\x00\x00\x80\x3f")                         # inside the storage of ones
    (tmp_path / "crc.pt").write_bytes(raw[:i] + b"\x01" + raw[i + 1:])
    with pytest.raises(sg.CheckpointError, match="crc.pt.*corrupted"):
        sg.load(tmp_path / "crc.pt")
    with pytest.raises(ValueError, match="format"):
        sg.save({}, tmp_path / "z", format="onnx")


def test_a_pickled_torch_module_or_bfloat16_is_refused_by_name(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "full.pt")
    with pytest.raises(sg.CheckpointError, match=r"names torch\.nn\.modules\.linear\.Linear.*"
                                                 r"state_dict"):
        sg.load(tmp_path / "full.pt")
    torch.save({"w": torch.ones(2, dtype=torch.bfloat16)}, tmp_path / "bf.pt")
    with pytest.raises(sg.CheckpointError, match="BFloat16Storage.*not supported"):
        sg.load(tmp_path / "bf.pt")
