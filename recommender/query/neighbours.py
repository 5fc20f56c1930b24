"""Nearest-neighbour search over L2-normalised image features (cosine similarity).

Two backends, exact and faiss IVF, behind :func:`make_index` (which says when each serves).

faiss is imported only when an IVF index is built or loaded. An IVF index turns into plain
bytes with :meth:`IVFIndex.to_bytes` (faiss' own serialisation, no pickle); the model folder
stores them with a checksum that is checked before the bytes reach faiss.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from recommender.blas import serial_blas
from recommender.mapped import chunks

INDEX_KINDS = ("auto", "exact", "ivf")

# From this many vectors on, "auto" builds the IVF index. Measured on an idle 2-core
# machine (benchmarks/bench_neighbours.py, clustered 1280-d vectors): exact search costs
# ~0.2 ms per 1k vectors (4.2 ms at 20k, 16 ms at 50k, ~2x that when the machine is busy)
# against 0.5-0.7 ms for IVF at recall@10 >= 0.997, which takes 1.4 s to build at 20k.
APPROX_MIN_SIZE = 20_000

# k-means wants >= 39 training points per cluster; faiss' guideline is nlist ~ 4 sqrt(N).
_MIN_POINTS_PER_LIST = 39
# Train the coarse quantiser on at most this many points per cluster (faiss samples too).
_TRAIN_POINTS_PER_LIST = 64
_KMEANS_ITERATIONS = 10
# Candidates taken from the quantised search before exact re-scoring: n * factor, at least
# _RERANK_MIN. Cheap (a gather of a few hundred rows); it turns the rough RaBitQ order
# (recall@10 ~0.87 alone) into the exact one (~0.99 at the default nprobe).
_RERANK_FACTOR = 4
_RERANK_MIN = 128
_EXACT_CHUNK = 1024  # rows converted at a time when exact search reads float16 vectors
IVF_CODES = ("RaBitQ", "SQ8")
_CODES_BY_CLASS = {"IndexIVFRaBitQ": "RaBitQ", "IndexIVFScalarQuantizer": "SQ8"}


def _top_n(sims: np.ndarray, ids: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` largest ``sims``, most similar first; ties keep the lower id first."""
    ids = np.arange(len(sims)) if ids is None else ids
    n = min(n, len(sims))
    if n < len(sims):
        part = np.argpartition(-sims, n - 1)[:n]
    else:
        part = np.arange(len(sims))
    order = np.lexsort((ids[part], -sims[part]))
    top = part[order]
    return ids[top].astype(np.int64), sims[top].astype(np.float32)


def _as_query(query: np.ndarray, dim: int) -> np.ndarray:
    query = np.asarray(query, dtype=np.float32).reshape(-1)
    if query.shape[0] != dim:
        raise ValueError(f"query has {query.shape[0]} dimensions, the index {dim}")
    return query


def _as_vectors(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be 2-d, got shape {vectors.shape}")
    if vectors.dtype not in (np.float16, np.float32):
        vectors = vectors.astype(np.float32)
    return np.ascontiguousarray(vectors)


class ExactIndex:
    """Exact cosine search: one matrix-vector product and a partial sort.

    Parameters
    ----------
    vectors : (N, d) array
        L2-normalised rows. float16 rows stay float16 (half the memory, but searched in
        chunks converted to float32, which numpy does without SIMD: ~10-20x slower; only
        the fallback for large models when faiss is missing); anything else is stored as
        float32. Read-only, so searching is thread-safe.
    """

    kind = "exact"

    def __init__(self, vectors: np.ndarray) -> None:
        vectors = _as_vectors(vectors).view()  # a read-only view; the caller's array stays
        vectors.setflags(write=False)
        self.vectors = vectors

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def similarities(self, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of ``query`` to every row, as float32."""
        query = _as_query(query, self.dim)
        with serial_blas():
            if self.vectors.dtype == np.float32:
                return self.vectors @ query
            return self._similarities_f16(query)

    def _similarities_f16(self, query: np.ndarray) -> np.ndarray:
        out = np.empty(len(self), dtype=np.float32)
        buf = np.empty((min(_EXACT_CHUNK, len(self)), self.dim), dtype=np.float32)
        for start in range(0, len(self), _EXACT_CHUNK):
            stop = min(start + _EXACT_CHUNK, len(self))
            block = buf[: stop - start]
            block[...] = self.vectors[start:stop]
            np.dot(block, query, out=out[start:stop])
        return out

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` most similar rows to one query vector.

        Returns (indices, similarities), most similar first; ties keep the lower index first.
        """
        sims = self.similarities(query)
        n = max(0, min(int(n), len(self)))
        if n == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        return _top_n(sims, None, n)

    def params(self) -> dict[str, int | str]:
        """What a model manifest records about this index."""
        return {"kind": self.kind, "size": len(self)}

    def to_bytes(self) -> bytes:
        """Nothing: an exact index is rebuilt from the features on load."""
        return b""


def default_nlist(size: int) -> int:
    """Number of IVF clusters for ``size`` vectors: ~4 sqrt(N), >= 39 points each."""
    return max(1, min(int(4 * math.sqrt(size)), size // _MIN_POINTS_PER_LIST))


def default_nprobe(nlist: int) -> int:
    """Clusters visited per query: 1/16 of them, at least 16 (all of them if fewer).

    Measured on clustered synthetic data shaped like real image features
    (benchmarks/bench_neighbours.py): recall@10 ~0.99 with RaBitQ codes and re-scoring.
    """
    return min(nlist, max(16, math.ceil(nlist / 16)))


class IVFIndex:
    """Approximate cosine search with a faiss ``IVF<nlist>,<codes>`` index.

    Build one with :meth:`build`, or restore one with :meth:`from_bytes`. When ``vectors``
    (the full rows, float32 or float16) are given, the best candidates of the compressed
    search are re-scored exactly, so similarities and their order match
    :class:`ExactIndex` for every neighbour the index finds. Searching is thread-safe.
    """

    kind = "ivf"

    def __init__(self, index, vectors: np.ndarray | None = None, nprobe: int | None = None):
        import faiss

        self._faiss = faiss
        self._index = index
        self._ivf = faiss.extract_index_ivf(index)
        self.nlist = int(self._ivf.nlist)
        kind = type(faiss.downcast_index(self._ivf)).__name__
        self.codes = _CODES_BY_CLASS.get(kind, kind)
        self.nprobe = int(nprobe) if nprobe else default_nprobe(self.nlist)
        if not 1 <= self.nprobe <= self.nlist:
            raise ValueError(f"nprobe must be between 1 and nlist={self.nlist}, not {nprobe}")
        self.vectors = None
        if vectors is not None:
            vectors = _as_vectors(vectors)
            if vectors.shape != (index.ntotal, index.d):
                raise ValueError(
                    f"vectors of shape {vectors.shape} do not match the index "
                    f"({index.ntotal} x {index.d})"
                )
            self.vectors = vectors

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        nlist: int | None = None,
        nprobe: int | None = None,
        keep_vectors: bool = True,
        codes: str | None = None,
        seed: int = 0,
    ) -> IVFIndex:
        """Train the clusters and the quantiser on ``vectors`` and add them all.

        ``codes`` is one of :data:`IVF_CODES`; by default ``"RaBitQ"``, re-scored from
        ``vectors``. ``keep_vectors=False`` keeps only the codes, which must then be
        ``"SQ8"`` (d bytes a vector): similarities are approximate (within ~0.01).
        """
        import faiss

        codes = codes or ("RaBitQ" if keep_vectors else "SQ8")
        if codes not in IVF_CODES:
            raise ValueError(f"unknown codes {codes!r}; choose one of {IVF_CODES}")
        if codes == "RaBitQ" and not keep_vectors:
            raise ValueError(
                "RaBitQ codes alone rank too roughly (recall@10 ~0.87); keep the vectors "
                "for re-scoring or use codes='SQ8'"
            )
        vectors = _as_vectors(vectors)
        size, dim = vectors.shape
        if size == 0:
            raise ValueError("cannot build an IVF index over no vectors")
        nlist = int(nlist) if nlist else default_nlist(size)
        if not 1 <= nlist <= size:
            raise ValueError(f"nlist must be between 1 and the number of vectors, not {nlist}")
        # Unit vectors: L2 distance ranks like cosine and k-means stays well behaved.
        index = faiss.index_factory(dim, f"IVF{nlist},{codes}", faiss.METRIC_L2)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.niter = _KMEANS_ITERATIONS
        ivf.cp.seed = seed
        ivf.cp.max_points_per_centroid = _TRAIN_POINTS_PER_LIST
        rng = np.random.default_rng(seed)
        n_train = min(size, nlist * _TRAIN_POINTS_PER_LIST)
        rows = np.sort(rng.choice(size, n_train, replace=False)) if n_train < size else None
        # The sample straight into float32, a block at a time: no float16 copy of it first.
        train = np.empty((n_train, dim), np.float32)
        for start, stop, block in chunks(vectors, rows):
            train[start:stop] = block
        index.train(train)
        del train
        # Add in slices: a float16 matrix is never copied whole to float32, and a memory
        # map's pages are let go after each.
        for _start, _stop, block in chunks(vectors, size=65536):
            index.add(block)
        # The inverted lists grew like std::vectors (up to 2x slack); a round trip through
        # faiss' serialisation leaves them exactly sized, as a loaded model has them.
        blob = faiss.serialize_index(index)
        del index, ivf
        index = faiss.deserialize_index(blob)
        del blob
        return cls(index, vectors if keep_vectors else None, nprobe)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` most similar rows found, as :meth:`ExactIndex.search` returns them.

        May return fewer than ``n`` rows if the visited clusters hold fewer vectors.
        """
        query = _as_query(query, self.dim)
        n = max(0, min(int(n), len(self)))
        if n == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        k = n if self.vectors is None else min(len(self), max(_RERANK_MIN, n * _RERANK_FACTOR))
        params = self._faiss.SearchParametersIVF(nprobe=self.nprobe)  # type: ignore[call-arg]
        dist, ids = self._index.search(query[None], k, params=params)
        found = ids[0] >= 0
        ids = ids[0][found]
        if self.vectors is None:
            sims = 1.0 - dist[0][found] / 2.0  # |q - x|^2 = 2 - 2 q.x for unit vectors
        else:
            with serial_blas():
                sims = self.vectors[ids].astype(np.float32) @ query
        return _top_n(sims.astype(np.float32), ids, n)

    def to_bytes(self) -> bytes:
        """faiss' serialisation of the index (codes, clusters, quantiser), without vectors."""
        return self._faiss.serialize_index(self._index).tobytes()

    def params(self) -> dict[str, int | str]:
        """What a model manifest records about this index."""
        return {
            "kind": self.kind,
            "factory": f"IVF{self.nlist},{self.codes}",
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "size": len(self),
            "faiss_version": self._faiss.__version__,
        }

    @classmethod
    def from_bytes(
        cls, data: bytes, vectors: np.ndarray | None = None, nprobe: int | None = None
    ) -> IVFIndex:
        """Restore an index from :meth:`to_bytes`. Check the bytes' checksum first."""
        import faiss

        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        return cls(index, vectors, nprobe)


def choose_kind(size: int, kind: str = "auto") -> str:
    """The index kind :func:`make_index` builds for ``size`` vectors."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {INDEX_KINDS}")
    if kind == "auto":
        return "ivf" if size >= APPROX_MIN_SIZE else "exact"
    return kind


_NO_FAISS = (
    "faiss is not installed, so the {size:,} vectors are searched exactly (slower); "
    "install it with `pip install faiss-cpu`"
)


def make_index(vectors: np.ndarray, kind: str = "auto", **options) -> ExactIndex | IVFIndex:
    """Build a search index of the given kind over ``vectors``.

    ``"exact"``
        A float32 matrix-vector product and a partial sort: right for the model sizes people
        build from their own posts (a few ms up to ~20k images on 2 cores).
    ``"ivf"``
        faiss' inverted file (``IVF<nlist>,<codes>``): the query is compared with the
        compressed vectors of the ``nprobe`` closest clusters only, then the best candidates
        are re-scored exactly from the full vectors. The codes are RaBitQ by default (1 bit a
        dimension: 160 bytes a 1280-d vector), which rank well enough to pick candidates but
        need the full vectors; ``SQ8`` (8 bits a dimension) also searches alone. See
        ``benchmarks/README.md`` for the measurements behind the defaults.
    ``"auto"`` (default)
        ``"exact"`` below :data:`APPROX_MIN_SIZE` rows and ``"ivf"`` from there on
        (``"exact"``, with a warning, if faiss is not installed).

    ``options`` go to :meth:`IVFIndex.build` (``nlist``, ``nprobe``, ...).
    """
    chosen = choose_kind(len(vectors), kind)
    if chosen == "exact":
        return ExactIndex(vectors)
    try:
        return IVFIndex.build(vectors, **options)
    except ImportError:
        if kind != "auto":
            raise ImportError(_NO_FAISS.format(size=len(vectors))) from None
        warnings.warn(_NO_FAISS.format(size=len(vectors)), RuntimeWarning, stacklevel=2)
        return ExactIndex(vectors)


def restore_index(data: bytes, vectors: np.ndarray, params: dict) -> ExactIndex | IVFIndex:
    """Restore the index a model saved (``data`` from ``to_bytes``, its checksum checked).

    ``params`` are the manifest's record of it (:meth:`IVFIndex.params`). Without faiss
    the model still works, searching exactly, with a warning. Raises ``ValueError`` if
    the index does not fit ``vectors``.
    """
    kind = params.get("kind", "ivf")
    if kind != "ivf":
        raise ValueError(f"unknown saved index kind {kind!r}")
    try:
        index = IVFIndex.from_bytes(data, vectors, params.get("nprobe"))
    except ImportError:
        warnings.warn(_NO_FAISS.format(size=len(vectors)), RuntimeWarning, stacklevel=2)
        return ExactIndex(vectors)
    except RuntimeError as exc:  # faiss refuses bytes it cannot parse
        raise ValueError(f"the saved index cannot be read: {exc}") from None
    return index
