"""Turning the nearest training images into hashtag scores, and explaining each score.

A method blends an ALS part, a vote part, an image prior and a content term, each linear in
the neighbours or independent of them, so every score splits exactly into what each
neighbour added and what came from the image itself (:class:`Scorer` says how). The
methods' parameters and registry are :class:`recommender.config.Method` and
:data:`~recommender.config.METHODS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recommender.config import Method

# From this many hashtags on, a query scores only candidates (Scorer.score_top); below it,
# scoring every hashtag costs less than finding them (measured in benchmarks/bench_scale.py).
CANDIDATE_MIN_TAGS = 50_000
# Hashtags outside the first candidates are scanned this many at a time, largest ALS
# factors first, until none left can reach the k best (Scorer.score_top).
_SCAN_BLOCK = 2048
# Rows per block of OpenBLAS' float32 matrix-vector kernel (see _rows_dot).
_GEMV_ROWS = 4
# The scan may cover this share of the hashtags before scoring all of them is cheaper.
_SCAN_MAX_SHARE = 0.25


# How many nearest training images a query uses unless told (the page's slider, the CLI's
# -n, the evaluation's default): more neighbours with sharply similarity-weighted votes
# (the default method's power 5, recommender.config) find more of a post's hashtags than
# 5 plainly weighted ones.
DEFAULT_NEIGHBOURS = 15


def neighbour_weights(similarities: np.ndarray, method: Method) -> np.ndarray:
    """Weights of the neighbours, summing to 1 (uniform when all similarities are <= 0)."""
    n = len(similarities)
    if n == 0:
        return np.empty(0, dtype=np.float32)
    if method.weighting == "similarity":
        w = np.maximum(similarities.astype(np.float64), 0.0) ** method.power
        total = w.sum()
        if total > 0:
            return (w / total).astype(np.float32)
    return np.full(n, 1.0 / n, dtype=np.float32)


@dataclass(frozen=True, eq=False)
class Scored:
    """One query's scores, and the neighbours they came from
    (:meth:`recommender.query.recommender.HashtagRecommender.score_nearest`)."""

    nearest: np.ndarray  # the nearest indexed images found, most similar first
    neighbours: np.ndarray  # (n,) the first n of them, those that vote
    similarities: np.ndarray  # (n,)
    weights: np.ndarray  # (n,) each neighbour's share of the votes
    scores: np.ndarray  # (T,) every hashtag's score, or (S,): those of ``tags``
    prior: np.ndarray  # the image prior's part of each score (shaped as ``scores``)
    content: np.ndarray  # the content term's part of each score (shaped as ``scores``)
    # The hashtags scored, ascending (None: every hashtag). Only candidates are scored when
    # the model is large (Scorer.score_top): every other hashtag scores below the k best.
    tags: np.ndarray | None = None

    def at(self, values: np.ndarray, tags: np.ndarray) -> np.ndarray:
        """``values`` (``scores``, ``prior`` or ``content``) of the hashtag ids ``tags``,
        each of them scored."""
        values = np.asarray(values)
        if self.tags is None:
            return values[tags]
        return values[np.searchsorted(self.tags, tags)]

    def top(self, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """Hashtag ids of the ``k`` best scores, best first, as :func:`top_k` of every
        hashtag's score; ``exclude``: (T,) boolean mask of hashtags never to return."""
        if self.tags is None:
            return top_k(self.scores, k, exclude)
        return self.tags[top_k(self.scores, k, None if exclude is None else exclude[self.tags])]


class Scorer:
    """Scores hashtags from the neighbours found in the image index.

    Every method here is linear in the neighbours, plus at most one term that does not depend
    on them (the *prior*): a hashtag's score is the sum of one contribution per neighbour plus
    the prior, so the explanation "how much did each neighbour add, and how much came from
    the image itself" is exact.

    - ALS part: neighbour j adds ``w_j * (p_j . h_t)``, its post factors against the tag's
      factors. With uniform weights and nothing else this is the original project's method
      (the mean of the neighbours' post factors, dotted with every hashtag's factors).
    - Vote part: neighbour j adds ``w_j * [t in tags_j]``. With ``profiles``, a neighbour that
      carries a single hashtag ``s`` (in the demo data: an image known only by the search
      hashtag it was scraped under) votes with the *profile* of ``s`` instead: the share of
      the training posts carrying ``s`` and other hashtags that also carry ``t`` (1 for ``s``
      itself). Such a neighbour then brings the hashtags that usually go with its one tag.
    - Prior: ``prior_weight * (x . W_t)``, a ridge regression from the query's image features
      ``x`` to what each training image votes for (its hashtags, or its single hashtag's
      profile). It is not a neighbour's doing, so it is reported on its own
      (``TagScore.prior``).
    - Content: ``content_weight * p(t)``, where ``p(t)`` is the probability the backbone's
      ImageNet head gives the query's top classes that the curated table maps to ``t``
      (:mod:`recommender.vision.content`: a cheeseburger photo adds to #burger). Also the
      image's own doing, reported on its own (``TagScore.content``); 0 when the query's
      class probabilities are not given.

    A method blends ALS and vote with ``als_weight``, chooses uniform or similarity weights and
    adds the prior with ``prior_weight`` and the content term with ``content_weight``;
    ``calibrated_hedge`` takes other categories' search tags out of the ranking and
    ``calibrated_demote`` moves uncertain ones below the top 5 (:mod:`recommender.query.hedging`;
    tags are removed or moved, scores never change).

    Only the ALS term reaches every hashtag; the others are sparse. A query on a large model
    therefore scores only the hashtags that can reach its top k (:meth:`Scorer.score_top`:
    those with a vote or a content term, the prior's where a bound says they can, then the
    rest by the length of their ALS factors until their bound falls below the k-th best),
    with the same scores and the same top k as scoring all.

    Parameters
    ----------
    image_factors : (N_images, f) array
        ALS post factors of the posts in the image index, in index order.
    tag_factors : (T, f) array
        ALS hashtag factors.
    image_tags : (N_images, T) sparse matrix
        Binary: which hashtags each indexed post carries.
    profiles : (P, T) sparse matrix, optional
        Hashtag profiles (the vote part above); none by default.
    image_profile : (N_images,) int array, optional
        Row of ``profiles`` each indexed post votes with when a method uses profiles, -1
        for its own hashtags.
    prior_weights : (d, Q) array, optional
        Ridge weights from image features to the hashtags ``prior_tags``.
    prior_tags : (Q,) int array, optional
        Hashtag of each column of ``prior_weights``.
    class_tags : (C, T) sparse matrix, optional
        Binary: which hashtags each ImageNet class stands for
        (:func:`recommender.vision.content.class_tag_matrix`); without it there is no content term.
    """

    def __init__(
        self,
        image_factors: np.ndarray,
        tag_factors: np.ndarray,
        image_tags: sp.csr_matrix,
        profiles: sp.csr_matrix | None = None,
        image_profile: np.ndarray | None = None,
        prior_weights: np.ndarray | None = None,
        prior_tags: np.ndarray | None = None,
        class_tags: sp.csr_matrix | None = None,
    ) -> None:
        self.image_factors = np.ascontiguousarray(image_factors, dtype=np.float32)
        self.tag_factors = np.ascontiguousarray(tag_factors, dtype=np.float32)
        self.image_tags = sp.csr_matrix(image_tags, dtype=np.float32)
        n_images, n_tags = self.image_tags.shape
        if self.image_factors.shape[0] != n_images:
            raise ValueError("image_factors and image_tags disagree on the number of images")
        if self.tag_factors.shape[0] != n_tags:
            raise ValueError("tag_factors and image_tags disagree on the number of hashtags")
        if profiles is None:
            profiles = sp.csr_matrix((0, n_tags), dtype=np.float32)
        self.profiles = sp.csr_matrix(profiles, dtype=np.float32)
        if image_profile is None:
            image_profile = np.full(n_images, -1, dtype=np.int64)
        self.image_profile = np.asarray(image_profile, dtype=np.int64)
        if self.profiles.shape[1] != n_tags or self.image_profile.shape != (n_images,):
            raise ValueError("profiles do not match the hashtags or the images")
        if self.image_profile.max(initial=-1) >= self.profiles.shape[0]:
            raise ValueError("image_profile points past the last profile")
        if prior_weights is None or prior_tags is None:
            prior_weights, prior_tags = np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
        # Stored as rows, one a hashtag (Q, d): the prior of some hashtags is then the same
        # matrix-vector kernel on some rows (Scorer._rows_dot), equal to the last bit.
        self._prior_rows = np.ascontiguousarray(np.asarray(prior_weights, np.float32).T)
        self.prior_tags = np.asarray(prior_tags, dtype=np.int64)
        if self.prior_weights.shape[1] != len(self.prior_tags) or (
            len(self.prior_tags) and self.prior_tags.max() >= n_tags
        ):
            raise ValueError("prior_weights and prior_tags do not match the hashtags")
        if class_tags is None:
            class_tags = sp.csr_matrix((0, n_tags), dtype=np.float32)
        # Stored transposed: the content term is one (T, C) @ (C,) product per query.
        self.tag_classes = sp.csr_matrix(sp.csr_matrix(class_tags, dtype=np.float32).T)
        if self.tag_classes.shape[0] != n_tags:
            raise ValueError("class_tags do not match the hashtags")
        self.class_tags = sp.csr_matrix(self.tag_classes.T)  # (C, T): a class's hashtags
        # For Scorer.score_top: the hashtags by the norm of their ALS factors, largest first
        # (int32 ids and float32 norms: 8 bytes a hashtag), and the prior's hashtags' factors.
        norms = np.linalg.norm(self.tag_factors, axis=1)
        self._by_norm = np.argsort(-norms, kind="stable").astype(np.int32)
        self._norms = norms[self._by_norm].astype(np.float32)
        self._prior_order = np.argsort(self.prior_tags, kind="stable")
        self._prior_sorted = self.prior_tags[self._prior_order]
        self._prior_bound: _PriorBound | None = None  # built by the first candidate query

    @property
    def prior_weights(self) -> np.ndarray:
        """(d, Q): the ridge weights of the prior (a view of the stored rows)."""
        return self._prior_rows.T

    @property
    def n_tags(self) -> int:
        return self.tag_factors.shape[0]

    @property
    def has_prior(self) -> bool:
        return len(self.prior_tags) > 0

    @property
    def has_content(self) -> bool:
        return self.tag_classes.nnz > 0

    def _vote_sources(
        self, neighbours: np.ndarray, method: Method
    ) -> list[tuple[np.ndarray, sp.csr_matrix]]:
        """What the neighbours vote with, without assembling one row per neighbour.

        ``(positions, rows)`` pairs: the neighbours at ``positions`` (into ``neighbours``)
        vote with ``rows``, one sparse row each: their own hashtags, or (with ``profiles``)
        the profile a single-hashtag image borrows. Together these are
        :func:`recommender.fit.als.vote_targets` of the neighbours, row for row.
        """
        positions = np.arange(len(neighbours))
        if not method.profiles or self.profiles.shape[0] == 0:
            return [(positions, self.image_tags[neighbours])]
        single = self.image_profile[neighbours] >= 0
        own, borrowed = positions[~single], positions[single]
        out = []
        if len(own):
            out.append((own, self.image_tags[neighbours[own]]))
        if len(borrowed):
            out.append((borrowed, self.profiles[self.image_profile[neighbours[borrowed]]]))
        return out

    def _votes(self, neighbours: np.ndarray, weights: np.ndarray, method: Method) -> np.ndarray:
        """The weighted votes of the neighbours for every hashtag, shape (T,): one sparse
        product per source of :meth:`_vote_sources`."""
        out = np.zeros(self.n_tags, dtype=np.float32)
        for positions, rows in self._vote_sources(neighbours, method):
            out += rows.T @ weights[positions]
        return out

    def _votes_on(
        self, neighbours: np.ndarray, weights: np.ndarray, method: Method
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(tags, votes)``: the hashtags the neighbours vote for (ascending) and their
        :meth:`_votes`, summed in the same order (so equal to the last bit)."""
        sources = self._vote_sources(neighbours, method)
        ids = [rows.indices for _, rows in sources]
        tags = _unique(np.concatenate(ids)) if ids else np.empty(0, np.int64)
        out = np.zeros(len(tags), dtype=np.float32)
        for (positions, rows), cols in zip(sources, ids, strict=True):
            part = np.zeros(len(tags), dtype=np.float32)
            per_row = np.repeat(weights[positions].astype(np.float32), np.diff(rows.indptr))
            np.add.at(part, np.searchsorted(tags, cols), rows.data * per_row)
            out += part
        return tags.astype(np.int64), out

    def score_top(
        self,
        neighbours: np.ndarray,
        weights: np.ndarray,
        method: Method,
        query: np.ndarray | None = None,
        classes: np.ndarray | None = None,
        k: int = 10,
        exclude: np.ndarray | None = None,
        always: np.ndarray | None = None,
        candidates: bool | None = None,
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
        """``(tags, scores, prior, content)`` as :meth:`score_parts` of the hashtags ``tags``
        only: enough of them that every other hashtag scores below the ``k`` best of them
        (``tags`` None: every hashtag was scored).

        A hashtag's score has parts other than the ALS term only if the neighbours vote
        for it, the prior predicts it or the content term names it. Those the neighbours
        vote for or the content term names are scored, with ``always`` (hashtag ids); the
        prior's other hashtags (up to 20,000, each 1,280 weights) only where an upper bound
        of their ALS + prior (:class:`_PriorBound`) reaches the ``k``-th best score. Every
        other hashtag scores ``als_weight * (h . u)``, at most ``|als_weight| * |h| |u|``;
        they are scanned in the order of ``|h|`` until that bound is below the ``k``-th best
        score, so the top ``k`` is exactly that of every hashtag. ``exclude`` ((T,)
        boolean) and ``always`` are hashtags the ranking may leave out: the ``k`` best are
        counted without them. ``candidates``: None scores candidates from
        :data:`CANDIDATE_MIN_TAGS` hashtags on, True/False always/never (every hashtag is
        scored whenever that is cheaper).
        """
        if candidates is None:
            candidates = self.n_tags >= CANDIDATE_MIN_TAGS
        found = (
            self._score_candidates(neighbours, weights, method, query, classes, k, exclude, always)
            if candidates and len(neighbours)
            else None
        )
        if found is None:
            return (None, *self.score_parts(neighbours, weights, method, query, classes))
        return found

    def _score_candidates(self, neighbours, weights, method, query, classes, k, exclude, always):
        parts = []
        a = float(method.als_weight)
        votes = None
        if a < 1:
            vote_tags, votes = self._votes_on(neighbours, weights, method)
            parts.append(vote_tags)
        use_prior = query is not None and method.prior_weight != 0 and self.has_prior
        if use_prior:
            query = self._as_query(query)
        probs = None
        if classes is not None and method.content_weight != 0 and self.has_content:
            from recommender.vision.content import keep_top

            probs = keep_top(classes)
            parts.append(self.class_tags[np.flatnonzero(probs)].indices)
        if always is not None:
            parts.append(np.asarray(always, dtype=np.int64))
        tags = _unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)
        user = weights @ self.image_factors[neighbours] if a > 0 else None

        def score(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            # The same float32 operations, in the same order, as score_parts.
            total = np.zeros(len(ids), dtype=np.float32)
            if a > 0:
                total += a * _rows_dot(self.tag_factors, ids, user)
            if a < 1 and votes is not None:
                total += (1.0 - a) * _values_at(vote_tags, votes, ids)
            prior = np.zeros(len(ids), dtype=np.float32)
            if use_prior:
                prior = self._prior_of(ids, query, method)
            content = np.zeros(len(ids), dtype=np.float32)
            if probs is not None:
                content = (method.content_weight * (self.tag_classes[ids] @ probs)).astype(
                    np.float32
                )
            return total + prior + content, prior, content

        scores, prior, content = score(tags)
        found = [(tags, scores, prior, content)]
        # The k-th best score among the hashtags no ranking can leave out.
        stays = np.ones(len(tags), dtype=bool)
        if exclude is not None:
            stays &= ~exclude[tags]
        if always is not None:
            stays &= ~np.isin(tags, always)
        kept = [scores[stays]]
        kth = _kth(kept[0], k)

        def add(ids: np.ndarray) -> float:
            """Score ``ids`` (none of them ``always``) too; the new k-th best score."""
            extra = score(ids)
            found.append((ids, *extra))
            kept.append(extra[0] if exclude is None else extra[0][~exclude[ids]])
            return _kth(np.concatenate(kept), k)

        if use_prior:
            # The prior's other hashtags score ALS + prior: bounded from above, and scored
            # only where that bound reaches the k-th best.
            reaches = self._bound().scores(query, user, a, method.prior_weight) >= kth
            hit, columns = self._prior_columns(tags)
            reaches[columns[hit]] = False  # scored already
            need = np.sort(self.prior_tags[reaches])
            if len(need):
                kth = add(need)
        if a == 0:
            # every other hashtag scores exactly 0, and would win a tie by a lower id
            return _merged(found) if kth > 0 else None
        reach = abs(a) * float(np.linalg.norm(user)) * (1 + 1e-4)
        start, limit = 0, int(_SCAN_MAX_SHARE * self.n_tags)
        # With a prior, its hashtags were bounded above: the scan covers the others.
        skip = self._bound().is_prior if use_prior else None
        while start < len(self._norms) and reach * float(self._norms[start]) + 1e-12 >= kth:
            if start >= limit:
                return None
            block = self._by_norm[start : start + _SCAN_BLOCK].astype(np.int64)
            start += len(block)
            fresh = ~np.isin(block, tags)
            if skip is not None:
                fresh &= ~skip[block]
            block = np.sort(block[fresh])
            if len(block):
                kth = add(block)
        return _merged(found)

    def _bound(self) -> _PriorBound:
        if self._prior_bound is None:  # two threads may both build it: the same
            self._prior_bound = _PriorBound(
                self._prior_rows, self.tag_factors, self.prior_tags, self.n_tags
            )
        return self._prior_bound

    def _as_query(self, query: np.ndarray) -> np.ndarray:
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if query.shape[0] != self._prior_rows.shape[1]:
            raise ValueError(
                f"query has {query.shape[0]} features, the prior {self._prior_rows.shape[1]}"
            )
        return query

    def _prior_of(self, ids: np.ndarray, query: np.ndarray, method: Method) -> np.ndarray:
        """The prior term of the hashtags ``ids`` (0 for those the prior does not predict),
        equal to the last bit to the same entries of :meth:`prior`."""
        out = np.zeros(len(ids), dtype=np.float32)
        hit, columns = self._prior_columns(ids)
        if hit.any():
            rows = _rows_dot(self._prior_rows, columns[hit], query)
            out[hit] = (method.prior_weight * rows).astype(np.float32)
        return out

    def _prior_columns(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(hit, columns)``: which of the hashtags ``ids`` the prior predicts, and at
        ``hit`` their column (row of the stored weights); elsewhere any column."""
        at = np.searchsorted(self._prior_sorted, ids).clip(0, len(self._prior_sorted) - 1)
        return self._prior_sorted[at] == ids, self._prior_order[at]

    def _prior_values(self, query: np.ndarray, method: Method) -> np.ndarray:
        """The prior term of the hashtags ``prior_tags``, shape (Q,)."""
        query = self._as_query(query)
        return (method.prior_weight * (self._prior_rows @ query)).astype(np.float32)

    def scores(self, *args, **kwargs) -> np.ndarray:
        """Score of every hashtag, shape (T,): the first of :meth:`score_parts` (same
        arguments)."""
        return self.score_parts(*args, **kwargs)[0]

    def score_parts(
        self,
        neighbours: np.ndarray,
        weights: np.ndarray,
        method: Method,
        query: np.ndarray | None = None,
        classes: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(scores, prior, content)``, each shape (T,): every hashtag's score, and in it the
        two terms that do not come from a neighbour (:meth:`prior`, :meth:`content`),
        computed once.

        ``query`` (the image features) is needed for the prior, ``classes`` (the query's
        ImageNet class probabilities) for the content term; without them there is none.
        """
        total = np.zeros(self.n_tags, dtype=np.float32)
        if len(neighbours):
            if method.als_weight > 0:
                user = weights @ self.image_factors[neighbours]
                total += method.als_weight * (self.tag_factors @ user)
            if method.als_weight < 1:
                total += (1.0 - method.als_weight) * self._votes(neighbours, weights, method)
        prior = self.prior(query, method)
        content = self.content(classes, method)
        return total + prior + content, prior, content

    def prior(self, query: np.ndarray | None, method: Method) -> np.ndarray:
        """The prior term of every hashtag's score, shape (T,) (zeros without one)."""
        out = np.zeros(self.n_tags, dtype=np.float32)
        if query is None or method.prior_weight == 0 or not self.has_prior:
            return out
        out[self.prior_tags] = self._prior_values(query, method)
        return out

    def content(self, classes: np.ndarray | None, method: Method) -> np.ndarray:
        """The content term of every hashtag's score, shape (T,) (zeros without one).

        ``classes``: the query's (C,) class probabilities; only its top
        :data:`recommender.vision.content.TOP_CLASSES` count (what a build keeps per image).
        """
        if classes is None or method.content_weight == 0 or not self.has_content:
            return np.zeros(self.n_tags, dtype=np.float32)
        from recommender.vision.content import keep_top

        probs = keep_top(classes)
        return (method.content_weight * (self.tag_classes @ probs)).astype(np.float32)

    def contributions(
        self, neighbours: np.ndarray, weights: np.ndarray, tags: np.ndarray, method: Method
    ) -> np.ndarray:
        """What each neighbour adds to each of ``tags``: shape (n_neighbours, len(tags)).

        Columns plus ``prior(query, method)[tags]`` and ``content(classes, method)[tags]``
        sum to :meth:`scores` of those tags (up to float rounding).
        """
        out = np.zeros((len(neighbours), len(tags)), dtype=np.float32)
        if len(neighbours) == 0 or len(tags) == 0:
            return out
        if method.als_weight > 0:
            dots = self.image_factors[neighbours] @ self.tag_factors[tags].T
            out += method.als_weight * dots
        if method.als_weight < 1:
            votes = np.zeros_like(out)
            order = np.argsort(tags, kind="stable")
            ordered = np.asarray(tags)[order]
            for positions, rows in self._vote_sources(neighbours, method):
                # rows[:, tags].toarray() without scipy's column indexing, which builds an
                # array as long as the hashtags on every call
                at = np.searchsorted(ordered, rows.indices).clip(0, len(tags) - 1)
                hit = ordered[at] == rows.indices
                row = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))[hit]
                np.add.at(votes, (positions[row], order[at[hit]]), rows.data[hit])
            out += (1.0 - method.als_weight) * votes
        return out * weights[:, None]


def _rows_dot(matrix: np.ndarray, ids: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix[ids] @ vector``, equal to the last bit to the same rows of ``matrix @
    vector``: OpenBLAS' float32 matrix-vector kernel sums rows :data:`_GEMV_ROWS` at a time,
    and the last ``len % _GEMV_ROWS`` rows one at a time in another order, so the rows are
    gathered in whole blocks (zeros after them) and those of the full product's last
    partial block are computed as there."""
    n_rows = matrix.shape[0]
    tail = n_rows - n_rows % _GEMV_ROWS
    out = np.empty(len(ids), dtype=np.float32)
    body = ids < tail
    n = int(body.sum())
    rows = np.empty((n + -n % _GEMV_ROWS, matrix.shape[1]), dtype=np.float32)
    np.take(matrix, ids[body], axis=0, out=rows[:n])
    rows[n:] = 0
    out[body] = (rows @ vector)[:n]
    if n < len(ids):
        out[~body] = (matrix[tail:] @ vector)[ids[~body] - tail]
    return out


def _merged(found: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ``(tags, scores, prior, content)`` parts of ``found`` as one, by hashtag."""
    if len(found) == 1:
        return found[0]
    tags, scores, prior, content = (np.concatenate(x) for x in zip(*found, strict=True))
    order = np.argsort(tags, kind="stable")
    return tags[order], scores[order], prior[order], content[order]


class _PriorBound:
    """Upper bounds of ``als_weight * (h . u) + prior_weight * (x . w)`` for the prior's
    hashtags, cheaper than the prior itself (a (Q, d) product per query).

    The ALS part is the product over a contiguous copy of the prior hashtags' factors (Q x
    f); the prior part splits ``w`` along an orthonormal basis ``B`` of the directions
    the prior's weights mostly lie in (``r`` of them, from a randomized range finder):
    ``x . w = (B^T x) . (B^T w) + x_r . w_r`` with ``|x_r . w_r| <= |x_r| |w_r|``. A margin
    covers float32 rounding. Built once per model, on the first query that needs it.
    """

    RANK = 32

    def __init__(
        self, rows: np.ndarray, tag_factors: np.ndarray, tags: np.ndarray, n_tags: int
    ) -> None:
        q, d = rows.shape
        r = min(self.RANK, q, d)
        probe = np.random.default_rng(0).standard_normal((q, r)).astype(np.float32)
        basis = np.linalg.qr(rows.T @ probe)[0]  # (d, r): range of the weights
        basis = np.linalg.qr(rows.T @ (rows @ basis))[0]  # one power iteration
        self.basis = np.ascontiguousarray(basis, dtype=np.float32)
        self.coords = np.ascontiguousarray(rows @ self.basis)  # (Q, r)
        norms = np.linalg.norm(rows, axis=1)
        inside = np.linalg.norm(self.coords, axis=1)
        self.residual = np.sqrt(np.maximum(norms**2 - inside**2, 0)).astype(np.float32)
        self.norms = norms.astype(np.float32)
        self.factors = np.ascontiguousarray(tag_factors[tags], dtype=np.float32)  # (Q, f)
        self.factor_norms = np.linalg.norm(self.factors, axis=1).astype(np.float32)
        self.is_prior = np.zeros(n_tags, dtype=bool)  # (T,): the prior's hashtags
        self.is_prior[tags] = True

    def scores(self, query: np.ndarray, user: np.ndarray | None, a: float, p: float) -> np.ndarray:
        """Upper bounds of the scores of the prior's hashtags, by column (without votes and
        content terms: the hashtags a query has those for are scored, not bounded)."""
        z = query @ self.basis
        out_of = float(np.sqrt(max(float(query @ query) - float(z @ z), 0.0)))
        q_norm = float(np.linalg.norm(query))
        bound = self.coords @ (p * z)
        bound += (abs(p) * out_of * (1 + 1e-3)) * self.residual
        bound += (1e-4 * abs(p) * q_norm) * self.norms
        if user is not None and a != 0:
            bound += self.factors @ (a * user)
            bound += (1e-4 * abs(a) * float(np.linalg.norm(user))) * self.factor_norms
        bound += 1e-6
        return bound


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first (ties: lower index first).

    ``exclude`` is a boolean mask of hashtags never to return.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if exclude is not None and exclude.any():
        scores = np.where(exclude, -np.inf, scores)
        k = min(k, int((~exclude).sum()))
    k = max(0, min(int(k), len(scores)))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return top[np.lexsort((top, -scores[top]))].astype(np.int64)


def _values_at(
    keys: np.ndarray, values: np.ndarray, ids: np.ndarray, order: np.ndarray | None = None
) -> np.ndarray:
    """``values`` of the ``ids`` among ``keys`` (ascending unless ``order`` sorts them), 0
    for an id not among them."""
    if order is not None:
        keys, values = keys[order], values[order]
    out = np.zeros(len(ids), dtype=np.float32)
    if not len(keys):
        return out
    at = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
    hit = keys[at] == ids
    out[hit] = values[at[hit]]
    return out


def _kth(scores: np.ndarray, k: int) -> float:
    """The ``k``-th largest of ``scores`` (-inf if fewer)."""
    if len(scores) < k or k < 1:
        return -np.inf
    return float(np.partition(scores, len(scores) - k)[len(scores) - k])


def _unique(ids: np.ndarray) -> np.ndarray:
    """The distinct ``ids``, ascending, as int64 (by sorting: a few thousand ids)."""
    ids = np.sort(np.asarray(ids, dtype=np.int64))
    if len(ids) < 2:
        return ids
    keep = np.empty(len(ids), dtype=bool)
    keep[0] = True
    np.not_equal(ids[1:], ids[:-1], out=keep[1:])
    return ids[keep]
