"""The hashtag recommender: a loaded model answering queries (the serving facade).

It finds a photo's nearest training images, scores every hashtag from them
(:mod:`recommender.query.scoring`), lets category hedging take other categories' search tags
out (:mod:`recommender.query.hedging`) and explains the top ``k``. Models are fitted by
:func:`recommender.fit.training.fit_recommender`.

>>> rec = HashtagRecommender.load("models/demo")                       # doctest: +SKIP
>>> result = rec.recommend("photo.jpg", n_neighbours=15, k=10)          # doctest: +SKIP
>>> [(t.tag, round(t.score, 3)) for t in result.hashtags]              # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recommender.blas import serial_blas
from recommender.config import (
    BATCH_SIZE_RANGE,
    DEFAULT_BACKBONE,
    DEFAULT_METHOD,
    THUMB_SIZE_RANGE,
    WORKERS_RANGE,
    BuildConfig,
    Method,
    get_method,
)
from recommender.errors import ConfigError, ModelError
from recommender.query.breadth import breadth_from_counts
from recommender.query.hedging import DEMOTE_TOP, CategoryHedge, HedgeCalibration, moved_below
from recommender.query.neighbours import make_index, restore_index
from recommender.query.original import NAME as ORIGINAL
from recommender.query.original import OriginalModel
from recommender.query.original import require as require_original
from recommender.query.scoring import DEFAULT_NEIGHBOURS, Scored, Scorer, neighbour_weights
from recommender.store import model_io
from recommender.store.arrays import (
    ModelArrays,
    ModelParts,
    read_parts,
    thumbnail_list,
    write_parts,
)
from recommender.vision import images
from recommender.vision.backbones import Backbone
from recommender.vision.content import class_tag_matrix
from recommender.vision.content import seen as seen_classes

__all__ = [
    "BATCH_SIZE_RANGE",
    "THUMB_SIZE_RANGE",
    "WORKERS_RANGE",
    "BuildConfig",
    "HashtagRecommender",
    "ModelArrays",
    "Neighbour",
    "Recommendation",
    "SearchTag",
    "TagScore",
]

MAX_NEIGHBOURS = 50
MAX_HASHTAGS = 100
EMBED_BATCH = 32  # images per forward pass in embed_many (as the build's default)


@dataclass(frozen=True)
class Neighbour:
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
    from a neighbour (the method's image->hashtag prior, 0 for methods without one);
    ``content`` is what the ImageNet head sees in the image (0 without its classes).
    ``sum(contributions) + prior + content == score``. ``posts`` is how many training posts
    use the hashtag, ``tier`` how broad that is (see :mod:`recommender.query.breadth`).
    ``moved_down``: another category's search tag that hedging moved below the top
    :data:`~recommender.query.hedging.DEMOTE_TOP` (its score unchanged: the list is then
    not in score order there; :attr:`Recommendation.search_tags` says why).
    """

    tag: str
    score: float
    contributions: tuple[float, ...]
    prior: float = 0.0
    content: float = 0.0
    posts: int = 0
    tier: str = ""
    moved_down: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "score": round(float(self.score), 6),
            "prior": round(float(self.prior), 6),
            "content": round(float(self.content), 6),
            "posts": int(self.posts),
            "tier": self.tier,
            "moved_down": self.moved_down,
        }


@dataclass(frozen=True)
class SearchTag:
    """A search tag of the data set's categories (or a form of it, #animal for #animals)
    that hedging weighed for one photo, and what it did with it.

    ``probability``: the calibration's chance that a post like the photo carries the
    category (None: the category is not calibrated, so never removed or moved); ``kept``:
    in the list (False: left out as unlikely); ``moved_down``: kept, but below the top
    :data:`~recommender.query.hedging.DEMOTE_TOP`.
    """

    tag: str
    probability: float | None
    kept: bool
    moved_down: bool = False

    def to_dict(self) -> dict[str, Any]:
        p = self.probability
        return {
            "tag": self.tag,
            "probability": None if p is None else round(float(p), 4),
            "kept": self.kept,
            "moved_down": self.moved_down,
        }


@dataclass(frozen=True)
class Recommendation:
    """Result of one query."""

    hashtags: list[TagScore]
    neighbours: list[Neighbour]
    method: str
    # What the network sees: its top ImageNet classes (name, probability), if given.
    seen: list[tuple[str, float]] = field(default_factory=list)
    # Other categories' search tags the method's hedging took out of this top k (best first).
    left_out: list[str] = field(default_factory=list)
    # Every category search tag hedging weighed for this list: those in it (in its order),
    # then those it left out, each with its probability (empty without hedging).
    search_tags: list[SearchTag] = field(default_factory=list)

    @property
    def tags(self) -> list[str]:
        return [t.tag for t in self.hashtags]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "hashtags": [t.to_dict() for t in self.hashtags],
            "neighbors": [n.to_dict() for n in self.neighbours],
            "seen": [{"class": c, "probability": round(p, 4)} for c, p in self.seen],
            "left_out": list(self.left_out),
            "search_tags": [s.to_dict() for s in self.search_tags],
        }


@dataclass(frozen=True, eq=False)
class Ranked(Scored):
    """One query's ranking before its explanation (:meth:`HashtagRecommender.rank`)."""

    hedged: np.ndarray | None = None  # (T,) what the ranking left out: ``exclude`` plus hedging
    best: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # top k, best first
    # per category, the calibration's chance a post like the query carries it (None: no hedging)
    probability: np.ndarray | None = None
    # (T,) the tags hedging moves below the top DEMOTE_TOP (None: none)
    demoted: np.ndarray | None = None


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

    Load one with :meth:`load`, or fit one with
    :func:`recommender.fit.training.fit_recommender`. Querying is thread-safe: one instance
    can serve many sessions.
    """

    def __init__(self, parts: ModelParts) -> None:
        arrays = parts.arrays
        index = parts.index
        manifest = parts.manifest
        try:
            self.tags: list[str] = [str(t) for t in index["tags"]]
            images_ = index["images"]
            self.image_paths = [str(im["path"]) for im in images_]
            self.image_post_ids = [str(im["post_id"]) for im in images_]
            self.image_hashtags = [tuple(str(t) for t in im["hashtags"]) for im in images_]
            arrays.check(len(self.image_paths), len(self.tags))
            self.tag_counts = np.asarray(arrays.tag_counts, dtype=np.int64)
            self.scorer = Scorer(
                arrays.image_factors,
                arrays.tag_factors,
                arrays.image_tags(),
                *arrays.profiles(),
                arrays.prior_weights,
                arrays.prior_tags,
                class_tag_matrix(self.tags),
            )
            self.hedge = CategoryHedge(
                self.tags,
                manifest.get("categories", ()),
                manifest.get("single_tag_categories", ()),
                self.scorer.image_tags,
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"The model's arrays are inconsistent ({exc}); rebuild it.") from None
        if manifest.get("hedge_calibration") is not None:
            self.hedge.calibration = HedgeCalibration.from_dict(
                manifest["hedge_calibration"], self.hedge.n_categories
            )
        self.breadth = breadth_from_counts(self.tag_counts)
        # hashtags hedging may take out of a ranking (every form of every category)
        self._hedge_tags = np.flatnonzero(self.hedge.tag_category >= 0)
        self.manifest = manifest
        # Exact search for small models, an approximate index for large ones; a saved
        # index (``parts.neighbours``: its checked bytes) is restored rather than rebuilt.
        if parts.neighbours is None:
            self.index = make_index(arrays.features)
        else:
            try:
                self.index = restore_index(
                    parts.neighbours, arrays.features, manifest.get("neighbours", {})
                )
            except ValueError as exc:
                raise ModelError(
                    f"The model's neighbour index is unusable ({exc}); rebuild it."
                ) from None
        self.method = _saved_method(manifest)
        self.original = None  # the original project's method (None: built before it)
        if arrays.original_rows is not None:
            self.original = OriginalModel(
                arrays.features,
                arrays.original_rows,
                arrays.original_image_factors,
                arrays.original_tags,
                arrays.original_tag_factors,
                len(self.tags),
            )
        self.arrays = arrays
        self._parts = parts
        self._thumbnails = thumbnail_list(parts.thumbnails)
        self._tag_ids = {t: i for i, t in enumerate(self.tags)}
        self._backbone: Backbone | None = None
        self._backbone_lock = threading.Lock()
        self.path: Path | None = None

    def use_calibration(self, calibration: HedgeCalibration | None) -> None:
        """Hedge with ``calibration`` (fitted by :mod:`recommender.fit.calibration`; None:
        none), kept in the manifest so that :meth:`save` writes it."""
        self.hedge.calibration = calibration
        if calibration is None:
            self.manifest.pop("hedge_calibration", None)
        else:
            self.manifest["hedge_calibration"] = calibration.to_dict()

    # ------------------------------------------------------------------ storage
    def save(self, path: str | Path) -> Path:
        """Write the model folder atomically (see :mod:`recommender.store.model_io`)."""
        manifest = {k: v for k, v in self.manifest.items() if k not in ("files",)}
        manifest["neighbours"] = self.index.params()
        neighbours = self.index.to_bytes() if self.index.kind != "exact" else None
        parts = ModelParts(
            manifest, self.arrays, self._parts.index, self._parts.thumbnails, neighbours
        )
        out = write_parts(path, parts)
        self.path = out
        return out

    @classmethod
    def load(cls, path: str | Path, warm: bool = False) -> HashtagRecommender:
        """Load a model folder; ``warm=True`` also loads and compiles its backbone now.

        Raises :class:`~recommender.errors.ModelError` if the folder is missing, damaged or
        of a newer format, with a message saying how to rebuild.
        """
        rec = cls(read_parts(path))
        rec.path = Path(path)
        if warm:
            rec.backbone.warmup()
        return rec

    # ------------------------------------------------------------------ queries
    @property
    def backbone(self) -> Backbone:
        """The model's own backbone (loaded on first use, then shared).

        Raises :class:`~recommender.errors.ModelError` if the installed weights or
        preprocessing differ from those the model was built with.
        """
        if self._backbone is None:
            with self._backbone_lock:
                if self._backbone is None:
                    from recommender.vision.backbones import get_backbone

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

    def embed_with_classes(self, image: images.ImageSource) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`embed`, plus the image's (1000,) ImageNet class probabilities from the same
        forward pass (``None`` if the backbone has no trained head)."""
        pixels = images.load_for_model(image, self.backbone.input_size)
        features, probs = self.backbone.embed_with_classes(pixels[None])
        return features[0], None if probs is None else probs[0]

    def embed_many(
        self,
        sources: Sequence[images.ImageSource],
        batch_size: int = EMBED_BATCH,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, list[str | None]]:
        """Features of many images, ``batch_size`` at a time through the backbone.

        Returns ``(features, classes, errors)``: ``features[i]`` and ``classes[i]`` are what
        :meth:`embed_with_classes` gives for ``sources[i]`` (zeros when it cannot be used;
        ``classes`` is None if the backbone has no trained head), ``errors[i]`` None or why
        image ``i`` cannot be used. A bad image never stops the others. It is the build's
        pipeline (:func:`~recommender.vision.pipeline.embed_arrays`): decoding runs in two
        threads, each forward pass takes up to ``batch_size`` usable images, and only a few
        batches of pixels are held at a time. ``progress(done, total)`` is called after
        every batch.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size!r}")
        from recommender.vision.pipeline import embed_arrays

        return embed_arrays(sources, self.backbone, batch_size=batch_size, progress=progress)

    def recommend(
        self,
        image: images.ImageSource,
        n_neighbours: int = DEFAULT_NEIGHBOURS,
        k: int = 10,
        method: str | Method | None = None,
        blocklist: Iterable[str] | None = None,
    ) -> Recommendation:
        """Top-``k`` hashtags for ``image`` from its ``n_neighbours`` nearest training images."""
        features, classes = self.embed_with_classes(image)
        return self.recommend_features(features, n_neighbours, k, method, blocklist, classes)

    @serial_blas()  # a query's products are small: one BLAS thread is several times faster
    def recommend_features(
        self,
        features: np.ndarray,
        n_neighbours: int = DEFAULT_NEIGHBOURS,
        k: int = 10,
        method: str | Method | None = None,
        blocklist: Iterable[str] | None = None,
        classes: np.ndarray | None = None,
    ) -> Recommendation:
        """Like :meth:`recommend`, from features already computed by :meth:`embed`.

        This is the cheap part: moving a slider re-ranks without touching the image again.
        ``classes`` (from :meth:`embed_with_classes`) adds what the network sees; without
        them the content term is 0.
        """
        if not 1 <= int(n_neighbours) <= MAX_NEIGHBOURS:
            raise ConfigError(f"n_neighbours must be between 1 and {MAX_NEIGHBOURS}")
        if not 1 <= int(k) <= MAX_HASHTAGS:
            raise ConfigError(f"k must be between 1 and {MAX_HASHTAGS}")
        m = get_method(method) if method is not None else self.method
        exclude = self.blocked_mask(blocklist) if blocklist else None
        r = self.rank(features, n_neighbours, k, m, exclude, classes)
        left_out: list[str] = []
        if m.name == ORIGINAL:  # the original's own factors, nothing left out
            contrib = require_original(self.original).contributions(r, r.best)
        else:
            hedged = r.hedged
            if hedged is not None and hedged is not exclude:  # the same top k unhedged
                left_out = [self.tags[t] for t in r.top(int(k), exclude) if hedged[t]]
            contrib = self.scorer.contributions(r.neighbours, r.weights, r.best, m)
        scores, priors, contents = (r.at(v, r.best) for v in (r.scores, r.prior, r.content))
        down = np.zeros(len(self.tags), bool) if r.demoted is None else r.demoted
        tags = [
            TagScore(
                self.tags[t],
                float(scores[j]),
                tuple(float(c) for c in contrib[:, j]),
                float(priors[j]),
                float(contents[j]),
                int(self.tag_counts[t]),
                self.breadth.tier(int(self.tag_counts[t])),
                bool(down[t]),
            )
            for j, t in enumerate(r.best)
        ]
        neighbours = [
            Neighbour(
                int(i),
                self.image_paths[i],
                self.image_post_ids[i],
                float(s),
                float(w),
                self.image_hashtags[i],
            )
            for i, s, w in zip(r.neighbours, r.similarities, r.weights, strict=False)
        ]
        search_tags = self._search_tags(r, left_out)
        return Recommendation(
            tags, neighbours, m.name, seen_classes(classes), left_out, search_tags
        )

    def _search_tags(self, r: Ranked, left_out: list[str]) -> list[SearchTag]:
        """What hedging did with each category search tag of ``r``'s list and ``left_out``."""
        probabilities = r.probability
        if probabilities is None:
            return []
        down = np.zeros(len(self.tags), bool) if r.demoted is None else r.demoted

        def probability(t: int) -> float | None:
            p = float(probabilities[self.hedge.tag_category[t]])
            return p if np.isfinite(p) else None

        out = [
            SearchTag(self.tags[t], probability(t), True, bool(down[t]))
            for t in r.best
            if self.hedge.tag_category[t] >= 0
        ]
        for tag in left_out:
            out.append(SearchTag(tag, probability(self._tag_ids[tag]), False))
        return out

    def rank(
        self,
        features: np.ndarray,
        n_neighbours: int,
        k: int,
        method: Method,
        exclude: np.ndarray | None = None,
        classes: np.ndarray | None = None,
        candidates: bool | None = None,
    ) -> Ranked:
        """The steps every query takes, without explanations: neighbour search, weights,
        scores and their terms, hedging, the top ``k``. :meth:`recommend_features` explains
        the result; the evaluation (:func:`recommender.evaluation.rank_features`) keeps only
        ``best``, so it measures exactly what a user is shown. A large model scores only
        the hashtags that can reach the top ``k`` (``candidates``: see
        :meth:`Scorer.score_top`). The caller sets the BLAS threads (see
        :meth:`recommend_features`)."""
        if method.name == ORIGINAL:
            return self._rank_original(features, k)
        n = int(n_neighbours)
        nearest, sims = self.index.search(features, max(n, self.hedge.wide_neighbours(method)))
        s = self.score_nearest(
            features, nearest, sims, n, method, classes, int(k), exclude, candidates
        )
        hedging = self.hedge.removed(method, s)
        hedged = exclude
        if hedging.removed is not None:
            hedged = hedging.removed if exclude is None else exclude | hedging.removed
        if hedging.demoted is None:
            best = s.top(int(k), hedged)
        else:  # the tags that fill the top when demoted ones move down come from below k
            # (exact with candidate scoring: demoted tags are category forms, always scored,
            # and the list holds at most the k best of the others)
            best = moved_below(s.top(int(k) + DEMOTE_TOP, hedged), hedging.demoted)[: int(k)]
        return Ranked(
            **vars(s),
            hedged=hedged,
            best=best,
            probability=hedging.probability,
            demoted=hedging.demoted,
        )

    def score_nearest(
        self,
        features: np.ndarray,
        nearest: np.ndarray,
        similarities: np.ndarray,
        n_neighbours: int,
        method: Method,
        classes: np.ndarray | None = None,
        k: int | None = None,
        exclude: np.ndarray | None = None,
        candidates: bool | None = None,
    ) -> Scored:
        """Score every hashtag for the query ``features`` from its ``nearest`` indexed images
        (with their ``similarities``, most similar first), the first ``n_neighbours`` voting.

        With ``k``: only enough hashtags that the top ``k`` (without ``exclude``, (T,)
        boolean, and whatever hedging takes out) is exactly that of every hashtag
        (``Scored.tags``; see :meth:`Scorer.score_top`, ``candidates`` as there)."""
        n = int(n_neighbours)
        idx, sims = nearest[:n], similarities[:n]
        weights = neighbour_weights(sims, method)
        if k is None:
            terms = self.scorer.score_parts(idx, weights, method, features, classes)
            return Scored(nearest, idx, sims, weights, *terms)
        tags, scores, prior, content = self.scorer.score_top(
            idx, weights, method, features, classes, k, exclude, self._hedge_tags, candidates
        )
        return Scored(nearest, idx, sims, weights, scores, prior, content, tags=tags)

    def _rank_original(self, features: np.ndarray, k: int) -> Ranked:
        """The original project's ranking (:mod:`recommender.query.original`): its own
        factors, always its 5 neighbours, no block list, no hedging."""
        o = require_original(self.original).rank(features, k)
        zero = np.zeros(len(self.tags))
        return Ranked(
            nearest=o.neighbours,
            neighbours=o.neighbours,
            similarities=o.similarities,
            weights=o.weights,
            scores=o.scores,
            prior=zero,
            content=zero,
            best=o.best,
        )

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
        if not 0 <= index < len(self._thumbnails):
            return b""
        return bytes(self._thumbnails[index])

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
