"""Query speed of a built model: one uploaded photo, a slider move, and a cold start.

warm      ``HashtagRecommender.recommend`` on the encoded bytes of an uploaded photo (decode,
          features, neighbours, scores), the model loaded and its backbone compiled: p50 and
          p95 over ``--queries`` calls cycling through the data set's 10 held-out test
          photos (320 px). The stages are timed separately in the same loop. A 12 MP
          (4000 x 3000) JPEG, as a phone takes them, is timed too.
rerank    ``recommend_features`` with the features already computed, as when a slider
          moves: ``n_neighbours`` cycling over 5..50, k=10.
cold      A fresh Python process: import, load the model, compile the backbone, first
          result. Measured from outside (process start to the result line) and inside.
classes   What naming the photo costs a query (issue 13), alternating in one loop: the
          query as before (decode, the features-only forward pass, ``recommend_features``
          without classes) and as now (``recommend``: one pass for features and class
          probabilities, the content term, what the network sees) with
          ``--content-weight``. p50 of each and the ratio.
hedging   What hedging costs a slider move, alternating in one loop:
          ``recommend_features`` with the model's method without hedging and with calibrated
          hedging at the default's thresholds (it also fetches the 50 nearest images),
          15 neighbours, k=10. p50 of each and the ratio.

The model defaults to /tmp/bench-model; build it first with

    python -m recommender build ../shared/datasets/instagram-2019 --out /tmp/bench-model
    python -m benchmarks.bench_query
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .common import DATASET, REPO, emit, header, percentiles, table, time_calls

MODULE = "benchmarks.bench_query"


def test_photos() -> list[bytes]:
    return [p.read_bytes() for p in sorted((DATASET / "test").glob("*.jpg"))]


def big_photo(seed: int = 0) -> bytes:
    """A 4000 x 3000 JPEG (q90) made from a test photo plus noise, so it compresses like one."""
    from PIL import Image

    base = Image.open(io.BytesIO(test_photos()[0])).convert("RGB").resize((4000, 3000))
    pixels = np.asarray(base, dtype=np.int16)
    noise = np.random.default_rng(seed).integers(-6, 7, pixels.shape, dtype=np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def warm(rec, photos: list[bytes], queries: int) -> list[dict]:
    from recommender.vision import images

    for data in photos[:5]:
        rec.recommend(data)
    total, decode, embed, rank = [], [], [], []
    side = rec.backbone.input_size
    for i in range(queries):
        data = photos[i % len(photos)]
        t0 = time.perf_counter()
        rec.recommend(data)
        t1 = time.perf_counter()
        pixels = images.load_for_model(data, side)
        t2 = time.perf_counter()
        feats, probs = rec.backbone.embed_with_classes(pixels[None])
        t3 = time.perf_counter()
        rec.recommend_features(feats[0], classes=None if probs is None else probs[0])
        t4 = time.perf_counter()
        total.append(t1 - t0)
        decode.append(t2 - t1)
        embed.append(t3 - t2)
        rank.append(t4 - t3)
    rows = [
        {
            "what": "recommend(photo bytes): decode + features + neighbours + scores",
            **percentiles(total),
        },
        {"what": "  stage: decode + resize to the model input", **percentiles(decode)},
        {"what": "  stage: backbone on one image", **percentiles(embed)},
        {"what": "  stage: neighbours + scores (recommend_features)", **percentiles(rank)},
    ]
    big = big_photo()
    rec.recommend(big)
    big_times = time_calls(lambda: rec.recommend(big), max(20, queries // 10))
    rows.append({"what": "recommend(12 MP phone JPEG, 4000x3000)", **percentiles(big_times)})
    return rows


def rerank(rec, photos: list[bytes], queries: int) -> list[dict]:
    seen = [rec.embed_with_classes(d) for d in photos]  # as the page keeps them per photo
    for f, c in seen:
        rec.recommend_features(f, classes=c)
    times, search = [], []
    for i in range(queries):
        (f, c), n = seen[i % len(seen)], 5 + i % 46
        start = time.perf_counter()
        rec.recommend_features(f, n_neighbours=n, k=10, classes=c)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        rec.index.search(f, n)
        search.append(time.perf_counter() - start)
    return [
        {"what": "recommend_features, n_neighbours 5..50, k=10", **percentiles(times)},
        {
            "what": f"  of which neighbour search ({rec.index.kind}, {len(rec.index):,} images)",
            **percentiles(search),
        },
    ]


def alternating(calls: dict, inputs: list, queries: int) -> dict[str, list[float]]:
    """Seconds per call of each of ``calls`` (name -> function of one input), timed in turn
    on the same input, the order rotated every query so none always runs first."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(queries):
        data = inputs[i % len(inputs)]
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            calls[name](data)
            times[name].append(time.perf_counter() - start)
    return times


def classes_cost(rec, photos: list[bytes], queries: int, content_weight: float) -> list[dict]:
    import dataclasses

    from recommender.vision import images

    from .bench_build import features_only

    old_forward = features_only(rec.backbone)
    side = rec.backbone.input_size
    plain = dataclasses.replace(rec.method, content_weight=0.0)
    seeing = dataclasses.replace(rec.method, name="seeing", content_weight=content_weight)

    def before(data: bytes):
        pixels = images.load_for_model(data, side)
        return rec.recommend_features(old_forward(pixels[None])[0].numpy()[0], method=plain)

    def after(data: bytes):
        return rec.recommend(data, method=seeing)

    for data in photos[:5]:
        before(data), after(data)
    times = alternating({"before": before, "after": after}, photos, queries)
    p50 = {name: float(np.median(t)) for name, t in times.items()}
    return [
        {
            "what": "before: decode + features-only pass + recommend_features",
            **percentiles(times["before"]),
        },
        {
            "what": f"now: recommend (features + classes, content weight {content_weight})",
            **percentiles(times["after"]),
        },
        {
            "what": "ratio of p50, now / before",
            "p50_ms": p50["after"] / p50["before"],
            "n": queries,
        },
    ]


def hedging_cost(rec, photos: list[bytes], queries: int) -> list[dict]:
    import dataclasses

    from recommender.config import METHODS

    default = METHODS["profiles_prior"]
    CALIBRATED, SINGLE = default.calibrated_hedge, default.calibrated_single  # noqa: N806

    seen = [rec.embed_with_classes(d) for d in photos]
    methods = {
        "plain": dataclasses.replace(rec.method, name="plain", calibrated_hedge=None),
        "calibrated": dataclasses.replace(
            rec.method, name="calibrated", calibrated_hedge=CALIBRATED, calibrated_single=SINGLE
        ),
    }
    for f, c in seen:
        for m in methods.values():
            rec.recommend_features(f, method=m, classes=c)
    calls = {
        name: (lambda query, m=m: rec.recommend_features(query[0], 15, 10, m, classes=query[1]))
        for name, m in methods.items()
    }
    times = alternating(calls, seen, queries)
    p50 = {name: float(np.median(t)) for name, t in times.items()}
    return [
        {"what": "recommend_features without hedging", **percentiles(times["plain"])},
        {
            "what": f"with calibrated hedging {CALIBRATED}/{SINGLE} (the default)",
            **percentiles(times["calibrated"]),
        },
        {
            "what": "ratio of p50, calibrated / none",
            "p50_ms": p50["calibrated"] / p50["plain"],
            "n": queries,
        },
    ]


def cold_worker(model: str) -> dict:
    """Run in a fresh process: the time to the first result, by stage."""
    t0 = time.perf_counter()
    from recommender import HashtagRecommender

    t1 = time.perf_counter()
    rec = HashtagRecommender.load(model)
    t2 = time.perf_counter()
    rec.backbone.warmup()
    t3 = time.perf_counter()
    result = rec.recommend(test_photos()[0])
    t4 = time.perf_counter()
    assert result.tags
    return {
        "import_s": t1 - t0,
        "load_s": t2 - t1,
        "backbone_s": t3 - t2,
        "first_s": t4 - t3,
        "inside_s": t4 - t0,
    }


def cold(model: str, repeat: int) -> list[dict]:
    runs = []
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", MODULE, "--model", model, "--cold-worker"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        outside = time.perf_counter() - start
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode or not line:
            raise RuntimeError(proc.stderr[-2000:])
        runs.append({**json.loads(line[-1]), "outside_s": outside})
    keys = ["import_s", "load_s", "backbone_s", "first_s", "inside_s", "outside_s"]
    med = {k: float(np.median([r[k] for r in runs])) for k in keys}
    labels = {
        "import_s": "  import recommender",
        "load_s": "  load the model folder",
        "backbone_s": "  build backbone + compile (warm-up call)",
        "first_s": "  first recommend()",
        "inside_s": "  total inside the process",
        "outside_s": "cold start: process start to first result",
    }
    order = ["outside_s", "import_s", "load_s", "backbone_s", "first_s", "inside_s"]
    return [
        {
            "what": labels[k],
            "p50_ms": med[k] * 1000,
            "n": repeat,
            "range": f"{min(r[k] for r in runs):.2f}-{max(r[k] for r in runs):.2f} s",
        }
        for k in order
    ]


COLUMNS = [
    ("what", "what", ""),
    ("p50_ms", "p50 ms", ".2f"),
    ("p95_ms", "p95 ms", ".2f"),
    ("n", "n", ""),
    ("range", "range", ""),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="/tmp/bench-model")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["warm", "rerank", "cold"],
        choices=["warm", "rerank", "cold", "classes", "hedging"],
    )
    parser.add_argument(
        "--content-weight", type=float, default=0.1, help="for 'classes': the content term's weight"
    )
    parser.add_argument("--cold-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cold_worker:
        emit(cold_worker(args.model))
        return
    if not Path(args.model, "manifest.json").is_file():
        raise SystemExit(f"no model at {args.model}; build one first (see --help)")
    from recommender import HashtagRecommender

    photos = test_photos()
    rows = []
    if "cold" in args.sections:  # first, before this process warms the page cache further
        header(f"Cold start in a fresh process (median of {args.cold_runs})")
        part = cold(args.model, args.cold_runs)
        print(table(part, COLUMNS), flush=True)
        rows += part
    rec = HashtagRecommender.load(args.model, warm=True)
    print(f"\nmodel {args.model}: {rec!r}, index {rec.index.kind}")
    if "warm" in args.sections:
        header(f"Warm latency of one uploaded photo ({args.queries} queries)")
        part = warm(rec, photos, args.queries)
        print(table(part, COLUMNS), flush=True)
        rows += part
    if "rerank" in args.sections:
        header(f"Re-ranking after a slider move ({args.queries} calls)")
        part = rerank(rec, photos, args.queries)
        print(table(part, COLUMNS), flush=True)
        rows += part
    if "classes" in args.sections:
        header(
            f"What the class probabilities cost a query ({args.queries} of each, "
            "alternating; the ratio row's p50 column is the ratio)"
        )
        part = classes_cost(rec, photos, args.queries, args.content_weight)
        print(table(part, COLUMNS), flush=True)
        rows += part
    if "hedging" in args.sections:
        header(
            f"What hedging costs a slider move ({args.queries} of each, "
            "alternating; the ratio row's p50 column is the ratio)"
        )
        part = hedging_cost(rec, photos, args.queries)
        print(table(part, COLUMNS), flush=True)
        rows += part


if __name__ == "__main__":
    main()
