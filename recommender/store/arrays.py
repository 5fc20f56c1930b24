"""The typed schema of a model's numeric arrays, and reading/writing them in a model folder.

``arrays.npz`` of a model folder holds exactly the fields of :class:`ModelArrays` (plus any
``extra`` arrays a feature adds); this module is the one place that names them. Training
(:mod:`recommender.fit.training`) fills a :class:`ModelArrays`; the query facade
(:class:`recommender.query.recommender.HashtagRecommender`) reads one back. Files, checksums and
atomic writes are :mod:`recommender.store.model_io`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender.errors import ModelError
from recommender.store import model_io

# Fields a model of an older build may lack: they are filled with "nothing" on load.
_OPTIONAL = ("profiles_indptr", "profiles_indices", "profiles_data", "image_profile")
_PRIOR = ("prior_weights", "prior_tags")
ORIGINAL = ("original_rows", "original_image_factors", "original_tags", "original_tag_factors")


@dataclass
class ModelArrays:
    """Every numeric array of a model, with its shape and dtype.

    Shapes (N indexed images, T hashtags, F ALS factors, d feature dimensions, P single-tag
    profiles, Q hashtags the prior predicts)::

        features            (N, d)  float32, or float16 for large models
        image_factors       (N, F)  float32  ALS factors of the indexed images' posts
        tag_factors         (T, F)  float32
        tag_counts          (T,)    int64    training posts per hashtag
        image_tags_indptr   (N+1,)  int64    CSR of the indexed images' hashtags
        image_tags_indices  (nnz,)  int32
        profiles_indptr     (P+1,)  int64    CSR of the single-tag profiles (P, T)
        profiles_indices    (nnz,)  int32
        profiles_data       (nnz,)  float32
        image_profile       (N,)    int64    row in the profiles, -1 for several hashtags
        prior_weights       (d, Q)  float32  ridge prior from features to hashtags
        prior_tags          (Q,)    int64    the hashtag columns the prior predicts

    The original project's method keeps its own small factor set (M indexed images whose posts
    have hashtags of their own, Q' hashtags they carry, 10 factors; see
    :mod:`recommender.fit.original`); a model built before it has none::

        original_rows           (M,)      int64    rows of the image index, ascending
        original_image_factors  (M, 10)   float32
        original_tags           (Q',)     int64    the hashtags' ids
        original_tag_factors    (Q', 10)  float32
    """

    features: np.ndarray
    image_factors: np.ndarray
    tag_factors: np.ndarray
    tag_counts: np.ndarray
    image_tags_indptr: np.ndarray
    image_tags_indices: np.ndarray
    profiles_indptr: np.ndarray | None = None
    profiles_indices: np.ndarray | None = None
    profiles_data: np.ndarray | None = None
    image_profile: np.ndarray | None = None
    prior_weights: np.ndarray | None = None
    prior_tags: np.ndarray | None = None
    original_rows: np.ndarray | None = None
    original_image_factors: np.ndarray | None = None
    original_tags: np.ndarray | None = None
    original_tag_factors: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_tags(self) -> int:
        return int(self.tag_factors.shape[0])

    def image_tags(self) -> sp.csr_matrix:
        """The (N, T) binary CSR matrix of the indexed images' hashtags."""
        return sp.csr_matrix(
            (
                np.ones(len(self.image_tags_indices), dtype=np.float32),
                self.image_tags_indices,
                self.image_tags_indptr,
            ),
            shape=(len(self.image_tags_indptr) - 1, self.n_tags),
        )

    def profiles(self) -> tuple[sp.csr_matrix | None, np.ndarray | None]:
        """The (P, T) single-tag profiles and each image's row in them (None if absent)."""
        if self.profiles_indptr is None:
            return None, None
        profiles = sp.csr_matrix(
            (self.profiles_data, self.profiles_indices, self.profiles_indptr),
            shape=(len(self.profiles_indptr) - 1, self.n_tags),
        )
        return profiles, self.image_profile

    def check(self, n_images: int, n_tags: int) -> None:
        """Raise :class:`ModelError` unless the arrays fit ``n_images`` images, ``n_tags`` tags."""
        if self.features.ndim != 2 or self.features.shape[0] != n_images:
            raise ModelError("The model's features do not match its image list; rebuild it.")
        if len(self.tag_counts) != n_tags:
            raise ModelError("The model's hashtag counts do not match its hashtags; rebuild it.")
        if (
            self.tag_factors.shape[0] != n_tags
            or self.image_factors.shape[0] != n_images
            or len(self.image_tags_indptr) != n_images + 1
        ):
            raise ModelError("The model's arrays are inconsistent (shapes); rebuild it.")
        original = [getattr(self, name) for name in ORIGINAL]
        if any(a is not None for a in original):
            rows, image_factors, tags, tag_factors = original
            if (
                any(a is None for a in original)
                or image_factors.ndim != 2
                or tag_factors.ndim != 2
                or image_factors.shape != (len(rows), tag_factors.shape[1])
                or len(tags) != len(tag_factors)
                or (len(rows) and (rows.min() < 0 or rows.max() >= n_images))
                or (len(tags) and (tags.min() < 0 or tags.max() >= n_tags))
                or np.any(np.diff(rows) <= 0)
            ):
                raise ModelError("The model's original-method arrays are inconsistent; rebuild it.")

    # ------------------------------------------------------------ plain data
    def to_dict(self) -> dict[str, np.ndarray]:
        """The arrays by their file names (absent optional fields left out)."""
        out = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "extra" and getattr(self, f.name) is not None
        }
        for name, value in self.extra.items():
            if name in out:
                raise ValueError(f"extra array {name!r} clashes with a schema field")
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, arrays: dict[str, np.ndarray]) -> ModelArrays:
        """Typed arrays from what ``arrays.npz`` held; unknown names go to ``extra``.

        Raises :class:`ModelError` if a required array is missing.
        """
        names = {f.name for f in fields(cls)} - {"extra"}
        optional = {*_OPTIONAL, *_PRIOR, *ORIGINAL}
        missing = [n for n in names if n not in arrays and n not in optional]
        if missing:
            raise ModelError(f"The model's arrays lack {', '.join(sorted(missing))}; rebuild it.")
        known = {n: arrays[n] for n in names if n in arrays}
        extra = {n: v for n, v in arrays.items() if n not in names}
        return cls(**known, extra=extra)


@dataclass
class ModelParts:
    """Everything a model folder holds, in memory: what training makes and loading reads."""

    manifest: dict[str, Any]
    arrays: ModelArrays
    index: dict[str, Any]  # {"tags": [...], "images": [{"path", "post_id", "hashtags"}]}
    # One JPEG per indexed image: {"data", "offsets"} as read, or any sequence of bytes
    # (training passes a lazy view of the feature shards; writing streams it).
    thumbnails: dict[str, np.ndarray] | Sequence[bytes] = field(default_factory=dict)
    neighbours: bytes | None = None  # a saved approximate index, faiss' serialisation


def thumbnail_list(thumbnails: dict[str, np.ndarray] | Sequence[bytes]) -> Sequence:
    """``thumbnails`` as a sequence of JPEG bytes (views into the data, nothing copied)."""
    if not isinstance(thumbnails, dict):
        return thumbnails
    data = np.asarray(thumbnails.get("data", np.zeros(0, np.uint8)), dtype=np.uint8)
    offsets = thumbnails.get("offsets", np.zeros(1, np.int64))
    return _Slices(data, offsets)


class _Slices(Sequence):
    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data, self.offsets = data, offsets

    def __len__(self) -> int:
        return max(len(self.offsets) - 1, 0)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return memoryview(self.data[self.offsets[i] : self.offsets[i + 1]])


def write_parts(path: str | Path, parts: ModelParts) -> Path:
    """Write ``parts`` as a model folder at ``path``, atomically (see :mod:`model_io`)."""
    return model_io.write_model(
        path,
        parts.manifest,
        parts.arrays.to_dict(),
        parts.index,
        thumbnail_list(parts.thumbnails),
        parts.neighbours,
    )


def read_parts(path: str | Path) -> ModelParts:
    """Read and check the model folder at ``path`` (one whole version of it, even while a
    build replaces it: :func:`recommender.store.model_io.read_whole_model`).

    Raises :class:`~recommender.errors.ModelError` saying what is wrong and how to rebuild.
    """
    manifest, arrays, index, thumbs, neighbours = model_io.read_whole_model(path)
    return ModelParts(manifest, ModelArrays.from_dict(arrays), index, thumbs, neighbours)
