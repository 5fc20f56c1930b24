"""The hashtag recommender: image features + ALS hashtag model + neighbour scoring.

>>> rec = HashtagRecommender.load("models/demo")                       # doctest: +SKIP
>>> result = rec.recommend("photo.jpg", n_neighbors=5, k=10)           # doctest: +SKIP
>>> [(t.tag, round(t.score, 3)) for t in result.hashtags]              # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import images, model_io
from .backbones import DEFAULT_BACKBONE
from .blas import serial_blas
from .datasets import Post
from .errors import ConfigError, DatasetError, ModelError
from .hashtag_model import (
    ALSParams,
    fit_als,
    fit_image_prior,
    interaction_matrix,
    single_tag_profiles,
    tag_vocabulary,
    vote_targets,
)
from .neighbours import choose_kind, make_index, restore_index
from .scoring import DEFAULT_METHOD, Method, Scorer, get_method, neighbour_weights, top_k

MAX_NEIGHBORS = 50
MAX_HASHTAGS = 100
# Accepted ranges (inclusive) of BuildConfig's numbers; the CLI's options check the same.
THUMB_SIZE_RANGE = (16, 1024)
BATCH_SIZE_RANGE = (1, 4096)
WORKERS_RANGE = (1, 64)


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides what ``build`` makes; defaults are the documented defaults."""

    backbone: str = DEFAULT_BACKBONE
    weights: str | None = "default"
    als: ALSParams = field(default_factory=ALSParams)
    method: str = DEFAULT_METHOD
    thumb_size: int = 128
    batch_size: int = 32
    workers: int = 2

    def __post_init__(self) -> None:
        for name, (lo, hi) in (
            ("thumb_size", THUMB_SIZE_RANGE),
            ("batch_size", BATCH_SIZE_RANGE),
            ("workers", WORKERS_RANGE),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ConfigError(f"{name} must be a whole number from {lo} to {hi}, not {value!r}")
        if not isinstance(self.als, ALSParams):
            raise ConfigError(f"als must be an ALSParams, not {type(self.als).__name__}")
        get_method(self.method)  # an unknown name raises ConfigError

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["als"] = self.als.to_dict()
        out["method"] = get_method(self.method).to_dict()
        return out


@dataclass(frozen=True)
class Neighbor:
    """A training image close to the query."""

    index: int  # row in the model's image index
    image: str  # path relative to the data set root
    post_id: str
    similarity: float  # cosine similarity to the query
    weight: float  # share of this neighbour in every score
    hashtags: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "similarity": round(float(self.similarity), 6),
            "weight": round(float(self.weight), 6),
            "hashtags": list(self.hashtags),
        }


@dataclass(frozen=True)
class TagScore:
    """A recommended hashtag and where its score came from.

    ``contributions[j]`` is what neighbour ``j`` (same order as the result's neighbours)
    added to the score; ``prior`` is what came from the query image itself rather than
    from a neighbour (the method's image->hashtag prior, 0 for methods without one).
    ``sum(contributions) + prior == score``.
    """

    tag: str
    score: float
    contributions: tuple[float, ...]
    prior: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "score": round(float(self.score), 6),
            "prior": round(float(self.prior), 6),
        }


@dataclass(frozen=True)
class Recommendation:
    """Result of one query."""

    hashtags: list[TagScore]
    neighbors: list[Neighbor]
    method: str

    @property
    def tags(self) -> list[str]:
        return [t.tag for t in self.hashtags]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "hashtags": [t.to_dict() for t in self.hashtags],
            "neighbors": [n.to_dict() for n in self.neighbors],
        }


def _csr_arrays(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    return matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32)


def _profile_arrays(
    arrays: dict[str, np.ndarray], n_tags: int
) -> tuple[sp.csr_matrix | None, np.ndarray | None]:
    """Single-tag profiles from the model arrays (absent in models built before them)."""
    if "profiles_indptr" not in arrays:
        return None, None
    indptr = arrays["profiles_indptr"]
    profiles = sp.csr_matrix(
        (arrays["profiles_data"], arrays["profiles_indices"], indptr),
        shape=(len(indptr) - 1, n_tags),
    )
    return profiles, arrays["image_profile"]


def _saved_method(manifest: dict[str, Any]) -> Method:
    """The scoring method with the numbers the model saved (today's default if it saved none)."""
    saved = manifest.get("config", {}).get("method")
    if saved is None:
        return get_method(DEFAULT_METHOD)
    try:
        return Method.from_dict(saved)
    except ConfigError as exc:
        raise ModelError(
            f"The model's saved scoring method cannot be used ({exc}); rebuild it, or upgrade "
            "the recommender if a newer version built it."
        ) from None


class HashtagRecommender:
    """Recommends hashtags for an image from the hashtags of similar training posts.

    Build one with :meth:`fit` (from posts and their image features) or load one with
    :meth:`load`. Querying is thread-safe: one instance can serve many sessions.
    """

    def __init__(
        self,
        manifest: dict[str, Any],
        arrays: dict[str, np.ndarray],
        index: dict[str, Any],
        thumbnails: dict[str, np.ndarray] | None = None,
        neighbours: bytes | None = None,
    ) -> None:
        try:
            self.tags: list[str] = [str(t) for t in index["tags"]]
            images_ = index["images"]
            self.image_paths = [str(im["path"]) for im in images_]
            self.image_post_ids = [str(im["post_id"]) for im in images_]
            self.image_hashtags = [tuple(str(t) for t in im["hashtags"]) for im in images_]
            features = arrays["features"]
            image_tags = sp.csr_matrix(
                (
                    np.ones(len(arrays["image_tags_indices"]), dtype=np.float32),
                    arrays["image_tags_indices"],
                    arrays["image_tags_indptr"],
                ),
                shape=(len(self.image_paths), len(self.tags)),
            )
            self.tag_counts = np.asarray(arrays["tag_counts"], dtype=np.int64)
            self.scorer = Scorer(
                arrays["image_factors"],
                arrays["tag_factors"],
                image_tags,
                *_profile_arrays(arrays, len(self.tags)),
                arrays.get("prior_weights"),
                arrays.get("prior_tags"),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"The model's arrays are inconsistent ({exc}); rebuild it.") from None
        if features.ndim != 2 or features.shape[0] != len(self.image_paths):
            raise ModelError("The model's features do not match its image list; rebuild it.")
        if len(self.tag_counts) != len(self.tags):
            raise ModelError("The model's hashtag counts do not match its hashtags; rebuild it.")
        self.manifest = manifest
        # Exact search for small models, an approximate index for large ones; a saved
        # index (``neighbours``: its checked bytes) is restored rather than rebuilt.
        if neighbours is None:
            self.index = make_index(features)
        else:
            try:
                self.index = restore_index(neighbours, features, manifest.get("neighbours", {}))
            except ValueError as exc:
                raise ModelError(
                    f"The model's neighbour index is unusable ({exc}); rebuild it."
                ) from None
        self.method = _saved_method(manifest)
        self._arrays = arrays
        self._index_json = index
        thumbnails = thumbnails or {}
        self._thumb_data = thumbnails.get("data", np.zeros(0, np.uint8))
        self._thumb_offsets = thumbnails.get("offsets", np.zeros(1, np.int64))
        self._tag_ids = {t: i for i, t in enumerate(self.tags)}
        self._backbone = None
        self._backbone_lock = threading.Lock()
        self.path: Path | None = None

    # ----------------------------------------------------------------- building
    @classmethod
    def fit(
        cls,
        posts: Sequence[Post],
        features: np.ndarray,
        image_rows: Sequence[int],
        config: BuildConfig | None = None,
        thumbnails: Sequence[bytes] | None = None,
        manifest: dict[str, Any] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> HashtagRecommender:
        """Train on ``posts``.

        ``image_rows[i]`` is the row of ``features`` holding post ``i``'s image features, or
        -1 when the post has no (usable) image. Every post trains the hashtag model; only
        posts with a row enter the image index. ``thumbnails`` align with ``features``.
        """
        config = config or BuildConfig()
        if len(image_rows) != len(posts):
            raise ValueError("image_rows must have one entry per post")
        post_tags = [p.hashtags for p in posts]
        vocab, counts = tag_vocabulary(post_tags, config.als.min_support)
        if not vocab:
            raise DatasetError("no hashtags to learn from: every post's hashtags were dropped")
        matrix = interaction_matrix(post_tags, vocab)
        post_factors, tag_factors = fit_als(matrix, config.als, progress)
        with_image = [i for i, row in enumerate(image_rows) if row >= 0]
        if not with_image:
            raise DatasetError("no posts with an image to search")
        rows = np.array([image_rows[i] for i in with_image], dtype=np.int64)
        image_tags = matrix[with_image]
        indptr, indices = _csr_arrays(image_tags)
        profiles, image_profile = single_tag_profiles(matrix, image_tags)
        targets = vote_targets(image_tags, profiles, image_profile)
        prior_weights, prior_tags = fit_image_prior(features[rows], targets)
        arrays = {
            # Large models keep float16 features: half the memory, same neighbours.
            "features": np.ascontiguousarray(
                features[rows],
                dtype=np.float16 if choose_kind(len(rows)) == "ivf" else np.float32,
            ),
            "image_factors": post_factors[with_image],
            "tag_factors": tag_factors,
            "tag_counts": counts,
            "image_tags_indptr": indptr,
            "image_tags_indices": indices,
            "profiles_indptr": profiles.indptr.astype(np.int64),
            "profiles_indices": profiles.indices.astype(np.int32),
            "profiles_data": profiles.data.astype(np.float32),
            "image_profile": image_profile,
            "prior_weights": prior_weights,
            "prior_tags": prior_tags,
        }
        index = {
            "tags": vocab,
            "images": [
                {
                    "path": posts[i].image or "",
                    "post_id": posts[i].post_id,
                    "hashtags": list(posts[i].hashtags),
                }
                for i in with_image
            ],
        }
        full_manifest = dict(manifest or {})
        full_manifest["config"] = config.to_dict()
        full_manifest.setdefault("counts", {})
        full_manifest["counts"].update(
            {
                "posts": len(posts),
                "images": len(with_image),
                "hashtags": len(vocab),
                "pairs": int(matrix.nnz),
            }
        )
        thumbs = {}
        if thumbnails is not None:
            chosen = [thumbnails[r] for r in rows]
            offsets = np.zeros(len(chosen) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum([len(t) for t in chosen])
            thumbs = {"data": np.frombuffer(b"".join(chosen), np.uint8), "offsets": offsets}
        return cls(full_manifest, arrays, index, thumbs)

    # ------------------------------------------------------------------ storage
    def save(self, path: str | Path) -> Path:
        """Write the model folder atomically (see :mod:`recommender.model_io`)."""
        offsets = self._thumb_offsets
        data = self._thumb_data.tobytes()
        thumbs = [data[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
        manifest = {k: v for k, v in self.manifest.items() if k not in ("files",)}
        manifest["neighbours"] = self.index.params()
        neighbours = self.index.to_bytes() if self.index.kind != "exact" else None
        out = model_io.write_model(
            path, manifest, self._arrays, self._index_json, thumbs, neighbours
        )
        self.path = out
        return out

    @classmethod
    def load(cls, path: str | Path, warm: bool = False) -> HashtagRecommender:
        """Load a model folder; ``warm=True`` also loads and compiles its backbone now.

        Raises :class:`~recommender.errors.ModelError` if the folder is missing, damaged or
        of a newer format, with a message saying how to rebuild.
        """
        manifest, arrays, index, thumbs, neighbours = model_io.read_whole_model(path)
        rec = cls(manifest, arrays, index, thumbs, neighbours)
        rec.path = Path(path)
        if warm:
            rec.backbone.warmup()
        return rec

    # ------------------------------------------------------------------ queries
    @property
    def backbone(self):
        """The model's own backbone (loaded on first use, then shared).

        Raises :class:`~recommender.errors.ModelError` if the installed weights or
        preprocessing differ from those the model was built with.
        """
        if self._backbone is None:
            with self._backbone_lock:
                if self._backbone is None:
                    from .backbones import get_backbone

                    cfg = self.manifest.get("config", {})
                    backbone = get_backbone(
                        cfg.get("backbone", DEFAULT_BACKBONE), cfg.get("weights", "default")
                    )
                    model_io.check_backbone(self.manifest, backbone.fingerprint(), self.path)
                    self._backbone = backbone
        return self._backbone

    def embed(self, image: images.ImageSource) -> np.ndarray:
        """L2-normalised features of one image (path, bytes, file object or PIL image).

        Raises :class:`~recommender.errors.ImageError` for anything that is not a usable image.
        """
        pixels = images.load_for_model(image, self.backbone.input_size)
        return self.backbone.embed(pixels[None])[0]

    def recommend(
        self,
        image: images.ImageSource,
        n_neighbors: int = 5,
        k: int = 10,
        method: str | Method | None = None,
        blocklist: Iterable[str] | None = None,
    ) -> Recommendation:
        """Top-``k`` hashtags for ``image`` from its ``n_neighbors`` nearest training images."""
        return self.recommend_features(self.embed(image), n_neighbors, k, method, blocklist)

    @serial_blas()  # a query's products are small: one BLAS thread is several times faster
    def recommend_features(
        self,
        features: np.ndarray,
        n_neighbors: int = 5,
        k: int = 10,
        method: str | Method | None = None,
        blocklist: Iterable[str] | None = None,
    ) -> Recommendation:
        """Like :meth:`recommend`, from features already computed by :meth:`embed`.

        This is the cheap part: moving a slider re-ranks without touching the image again.
        """
        if not 1 <= int(n_neighbors) <= MAX_NEIGHBORS:
            raise ConfigError(f"n_neighbors must be between 1 and {MAX_NEIGHBORS}")
        if not 1 <= int(k) <= MAX_HASHTAGS:
            raise ConfigError(f"k must be between 1 and {MAX_HASHTAGS}")
        m = get_method(method) if method is not None else self.method
        idx, sims = self.index.search(features, int(n_neighbors))
        weights = neighbour_weights(sims, m)
        scores = self.scorer.scores(idx, weights, m, features)
        exclude = self.blocked_mask(blocklist) if blocklist else None
        best = top_k(scores, int(k), exclude)
        contrib = self.scorer.contributions(idx, weights, best, m)
        prior = self.scorer.prior(features, m)
        tags = [
            TagScore(
                self.tags[t],
                float(scores[t]),
                tuple(float(c) for c in contrib[:, j]),
                float(prior[t]),
            )
            for j, t in enumerate(best)
        ]
        neighbors = [
            Neighbor(
                int(i),
                self.image_paths[i],
                self.image_post_ids[i],
                float(s),
                float(w),
                self.image_hashtags[i],
            )
            for i, s, w in zip(idx, sims, weights, strict=False)
        ]
        return Recommendation(tags, neighbors, m.name)

    def blocked_mask(self, blocklist: Iterable[str]) -> np.ndarray:
        """Boolean mask over the model's hashtags of those in ``blocklist``."""
        mask = np.zeros(len(self.tags), dtype=bool)
        for tag in blocklist:
            i = self._tag_ids.get(tag)
            if i is not None:
                mask[i] = True
        return mask

    def thumbnail(self, index: int) -> bytes:
        """JPEG bytes of training image ``index``'s thumbnail (b"" if the model has none)."""
        if not 0 <= index < len(self._thumb_offsets) - 1:
            return b""
        start, end = self._thumb_offsets[index], self._thumb_offsets[index + 1]
        return self._thumb_data[start:end].tobytes()

    # ------------------------------------------------------------- description
    def info(self) -> dict[str, Any]:
        """What the model was built from and with (the manifest, minus checksums)."""
        return {k: v for k, v in self.manifest.items() if k != "files"}

    def __repr__(self) -> str:
        c = self.manifest.get("counts", {})
        return (
            f"HashtagRecommender(images={c.get('images')}, hashtags={c.get('hashtags')}, "
            f"backbone={self.manifest.get('config', {}).get('backbone')!r})"
        )
