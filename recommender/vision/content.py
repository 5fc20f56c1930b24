"""What the network sees: ImageNet classes, their names, and the hashtags they stand for.

The backbones' ImageNet head names what is in a photo ("cheeseburger", "golden retriever",
"seashore"). A curated table, ``assets/imagenet_hashtags.csv``, maps each of the 1000
classes to 0-3 hashtags (cheeseburger -> burger, cheeseburger). The scoring's *content*
term (:meth:`recommender.query.scoring.Scorer.content`) adds ``content_weight * p(t)`` to a
hashtag ``t`` the model knows, where ``p(t)`` is the summed probability of the photo's
top :data:`TOP_CLASSES` classes that map to ``t``: a photo the head calls 60% golden
retriever and 30% Labrador gives #dog 0.9.

Only the top :data:`TOP_CLASSES` classes of a photo count, so what a build keeps per image
(:func:`top_classes`) is all the evaluation needs, and a query scores exactly as the
evaluation did.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from recommender.errors import BackboneError, ConfigError

__all__ = [
    "CLASS_HASHTAGS_PATH",
    "N_CLASSES",
    "TOP_CLASSES",
    "ClassHashtags",
    "TopClasses",
    "class_hashtags",
    "class_tag_matrix",
    "dense_classes",
    "keep_top",
    "read_class_hashtags",
    "seen",
    "top_classes",
]

N_CLASSES = 1000
TOP_CLASSES = 5
CLASS_HASHTAGS_PATH = Path(__file__).resolve().parent.parent / "assets" / "imagenet_hashtags.csv"


@dataclass(frozen=True)
class ClassHashtags:
    """The curated table: one name and 0-3 hashtags per ImageNet class, in output order."""

    names: tuple[str, ...]
    hashtags: tuple[tuple[str, ...], ...]

    @property
    def mapped(self) -> int:
        """How many classes carry at least one hashtag."""
        return sum(1 for tags in self.hashtags if tags)


def read_class_hashtags(path: str | Path) -> ClassHashtags:
    """Read a class -> hashtags table (``class,name,hashtags``; ``#`` lines are comments).

    Raises :class:`~recommender.errors.BackboneError` (the head's table is part of the
    backbone) naming the line of anything malformed:
    a class out of order or missing, an empty name, more than 3 or badly formed hashtags.
    """
    path = Path(path)
    names: list[str] = []
    hashtags: list[tuple[str, ...]] = []
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            lines = [(n, line) for n, line in enumerate(fh, 1) if not line.startswith("#")]
    except OSError as exc:
        raise BackboneError(f"cannot read the class -> hashtag table {path}: {exc}") from None
    rows = csv.reader(line for _, line in lines)
    header = next(rows, None)
    if header != ["class", "name", "hashtags"]:
        raise BackboneError(f"{path}: the header must be class,name,hashtags, not {header}")
    for (lineno, _), row in zip(lines[1:], rows, strict=True):
        where = f"{path}, line {lineno}"
        if len(row) != 3 or not row[0].strip().isdigit() or int(row[0]) != len(names):
            raise BackboneError(f"{where}: expected class {len(names)},name,hashtags, got {row}")
        name, tags = row[1].strip(), tuple(row[2].split())
        if not name:
            raise BackboneError(f"{where}: class {row[0]} has no name")
        if len(tags) > 3 or len(set(tags)) != len(tags):
            raise BackboneError(f"{where}: a class takes 1-3 distinct hashtags, got {row[2]!r}")
        if any(not t.isalnum() or t != t.lower() for t in tags):
            raise BackboneError(f"{where}: hashtags are lowercase letters and digits, got {tags}")
        names.append(name)
        hashtags.append(tags)
    if len(names) != N_CLASSES:
        raise BackboneError(f"{path}: {len(names)} classes, the ImageNet head has {N_CLASSES}")
    return ClassHashtags(tuple(names), tuple(hashtags))


@functools.cache
def class_hashtags() -> ClassHashtags:
    """The packaged table (read once)."""
    return read_class_hashtags(CLASS_HASHTAGS_PATH)


def class_tag_matrix(tags: list[str], table: ClassHashtags | None = None) -> sp.csr_matrix:
    """(1000, T) binary CSR: which of a model's hashtags ``tags`` each class maps to.

    Hashtags of the table the model does not know are left out (they cannot be scored).
    """
    table = table or class_hashtags()
    ids = {t: i for i, t in enumerate(tags)}
    rows, cols = [], []
    for c, mapped in enumerate(table.hashtags):
        for tag in mapped:
            if tag in ids:
                rows.append(c)
                cols.append(ids[tag])
    data = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(table.hashtags), len(tags)))


def top_classes(probs: np.ndarray, k: int = TOP_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most probable classes of each row: ``(ids int16 (N, k), probs float32 (N, k))``,
    most probable first (ties: lower class first)."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[1] != N_CLASSES:
        raise ConfigError(f"class probabilities have shape (N, {N_CLASSES}), got {probs.shape}")
    k = min(int(k), N_CLASSES)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order.astype(np.int16), np.take_along_axis(probs, order, axis=1)


class TopClasses(NamedTuple):
    """What the embed stage keeps of each image's class probabilities: its top
    :data:`TOP_CLASSES`, ``ids`` (N, k) int16 and ``probs`` (N, k) float16, most probable
    first. Sparse: 20 bytes an image where the dense probabilities take 4,000."""

    ids: np.ndarray
    probs: np.ndarray

    @classmethod
    def of(cls, probs: np.ndarray) -> TopClasses:
        """The top classes of (N, 1000) probabilities, stored as the shards keep them."""
        ids, top = top_classes(probs)
        return cls(ids, top.astype(np.float16))

    def take(self, rows) -> TopClasses:
        """The rows ``rows`` (an index array), still sparse."""
        return TopClasses(self.ids[rows], self.probs[rows])

    def dense(self, row: int) -> np.ndarray:
        """Row ``row`` as (1000,) float32 probabilities (0 outside its top classes)."""
        return dense_classes(self.ids[row : row + 1], self.probs[row : row + 1])[0]


def keep_top(classes: np.ndarray, k: int = TOP_CLASSES) -> np.ndarray:
    """A copy of one photo's (1000,) probabilities with all but the top ``k`` set to 0."""
    classes = np.asarray(classes, dtype=np.float32).reshape(-1)
    if classes.shape[0] != N_CLASSES:
        raise ConfigError(f"class probabilities have {N_CLASSES} entries, got {classes.shape[0]}")
    ids, probs = top_classes(classes[None], k)
    out = np.zeros(N_CLASSES, dtype=np.float32)
    out[ids[0].astype(np.int64)] = probs[0]
    return out


def dense_classes(ids: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(N, 1000) probabilities from what :func:`top_classes` kept (the rest 0)."""
    ids = np.asarray(ids, dtype=np.int64)
    out = np.zeros((len(ids), N_CLASSES), dtype=np.float32)
    np.put_along_axis(out, ids, np.asarray(probs, dtype=np.float32), axis=1)
    return out


def seen(classes: np.ndarray | None, k: int = 3, min_prob: float = 0.05) -> list[tuple[str, float]]:
    """What the network sees in one photo: up to ``k`` (class name, probability), most
    probable first, those below ``min_prob`` left out (the best one always kept)."""
    if classes is None:
        return []
    ids, probs = top_classes(np.asarray(classes, dtype=np.float32).reshape(1, -1), k)
    names = class_hashtags().names
    return [
        (names[int(c)], float(p))
        for j, (c, p) in enumerate(zip(ids[0], probs[0], strict=True))
        if j == 0 or p >= min_prob
    ]
