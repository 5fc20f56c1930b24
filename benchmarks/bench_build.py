"""Build speed: feature extraction against the backbone's ceiling, the original project's
per-image ``model.predict``, a cache-assisted rebuild, and a whole ``build``.

Sections (all by default; pick with ``--sections``):

throughput  The extraction pipeline (read, hash, decode, resize, thumbnail, infer) over the
            full data set, without the feature cache, against the ceiling: the backbone
            alone on a batch of random uint8 tensors already in memory. The two alternate
            in the same process: a ceiling block, a chunk of ~330 images through the
            pipeline, a ceiling block, ... Each chunk's rate is divided by the mean of the
            ceiling blocks on either side; the median of those ratios is the figure (the
            machine is shared, so absolute rates drift). CPU milliseconds per image
            (process CPU time, all threads) are reported too: they do not depend on how
            busy the machine is. With several ``--workers`` values the data set is run
            once per value, chunks alternating between them.
original    The original project's way (decode one image, ``model.predict`` on the Keras
            model, repeat) against the pipeline on the same ``--subset`` images; blocks of
            the two alternate, the speed-up is the ratio of their rates.
cache       A manifest data set (CSV image,hashtags) of copies of 90% of the images is
            built cold; then the manifest is extended to 100% and rebuilt with the same
            feature cache (only the new 10% are embedded), against a cold build of 100%.
build       ``build_model`` end to end on the real data set with ``use_cache=False``,
            with the ceiling measured right before and after.
shards      The embed stage (images -> feature shards, ``embed_to_shards``) against the
            plain pipeline (``extract_features``, what the build ran before shards) on the
            same chunks of the real data set, alternating; the median of the per-chunk rate
            ratios. A third arm is the embed stage as before it kept each image's top-5
            ImageNet classes in its shards (the backbone seen without its head: the same
            forward pass, its probabilities dropped); its ratio is with classes over
            without. Then the resume: an embed of the data set in shards of ``--shard-size``
            is SIGKILLed at 50% and run again; how many images it embeds again.
classes     What naming the photo costs the build (issue 13): blocks of the backbone on a
            batch in memory alternate between the forward pass before class probabilities
            (the pooled-features model alone, compiled the same way) and today's
            ``embed_with_classes`` plus keeping the top 5 classes; then pipeline chunks
            of the data set alternate the same two. Ratio of medians, new over old.
backbones   ``--compare-backbone`` (default efficientnet_lite1) against the default
            backbone: pipeline chunks of the data set alternate between the two, each
            chunk through both; extraction cost ratio = time per image, other over default.

    python -m benchmarks.bench_build                       # everything (~6 min)
    python -m benchmarks.bench_build --sections throughput --workers 1 2
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .common import DATASET, header, table

SECTIONS = ("throughput", "original", "cache", "build", "shards", "classes", "backbones")
DEFAULT_SECTIONS = ("throughput", "original", "cache", "build", "shards")


def dataset_images(root: Path) -> list[Path]:
    from recommender.data.datasets import load_dataset

    ds = load_dataset(root)
    return [ds.image_path(p) for p in ds.posts if p.image]


class Ceiling:
    """The backbone alone: ``embed`` on a fixed batch of random uint8 images in memory."""

    def __init__(self, backbone, batch_size: int) -> None:
        side = backbone.input_size
        rng = np.random.default_rng(0)
        self.backbone = backbone
        self.batch = rng.integers(0, 256, (batch_size, side, side, 3), dtype=np.uint8)
        backbone.embed(self.batch)  # trace and warm up
        backbone.embed(self.batch)

    def run(self, batches: int) -> tuple[int, float, float]:
        """(images, wall seconds, CPU seconds) of ``batches`` calls."""
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(batches):
            self.backbone.embed(self.batch)
        return batches * len(self.batch), time.perf_counter() - wall, time.process_time() - cpu


def run_pipeline(paths, backbone, **options) -> tuple[int, float, float]:
    from recommender.features.pipeline import extract_features

    wall, cpu = time.perf_counter(), time.process_time()
    ex = extract_features(paths, backbone, **options)
    assert not ex.errors, ex.errors[:3]
    return len(paths), time.perf_counter() - wall, time.process_time() - cpu


# --------------------------------------------------------------------------- throughput
def throughput(
    backbone, paths, workers: list[int], batch_size: int, chunk: int, ceiling_batches: int
) -> list[dict]:
    ceiling = Ceiling(backbone, batch_size)
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    run_pipeline(chunks[0][:batch_size], backbone, batch_size=batch_size, thumb_size=128)
    stats: dict[str, list] = {f"workers={w}": [] for w in workers}
    ceil_rates, ceil_cpu = [], []
    before = ceiling.run(ceiling_batches)
    for rep in range(len(workers)):
        for i, part in enumerate(chunks):
            w = workers[(i + rep) % len(workers)]
            got = run_pipeline(part, backbone, batch_size=batch_size, workers=w, thumb_size=128)
            after = ceiling.run(ceiling_batches)
            c_rate = (before[0] / before[1] + after[0] / after[1]) / 2
            ceil_rates.append(after[0] / after[1])
            ceil_cpu.append(after[2] / after[0])
            ratio = got[0] / got[1] / c_rate
            stats[f"workers={w}"].append((*got, ratio))
            before = after
    rows = [
        {
            "what": f"ceiling: backbone alone, batches of {batch_size} in memory",
            "images": len(ceil_rates) * ceiling_batches * batch_size,
            "rate": float(np.median(ceil_rates)),
            "cpu_ms": 1000 * float(np.median(ceil_cpu)),
            "ratio": 1.0,
        }
    ]
    for name, s in stats.items():
        arr = np.array(s)
        rows.append(
            {
                "what": f"pipeline, {name}, batch {batch_size}, thumbnails, no cache",
                "images": int(arr[:, 0].sum()),
                "rate": float(arr[:, 0].sum() / arr[:, 1].sum()),
                "cpu_ms": 1000 * float(arr[:, 2].sum() / arr[:, 0].sum()),
                "ratio": float(np.median(arr[:, 3])),
                "ratio_range": "{:.2f}-{:.2f}".format(*np.percentile(arr[:, 3], [25, 75])),
            }
        )
    ceiling_cpu = rows[0]["cpu_ms"]
    for row in rows:
        row["cpu_ratio"] = ceiling_cpu / row["cpu_ms"]
    return rows


# ----------------------------------------------------------------------------- original
def original_way(backbone, paths) -> tuple[int, float, float]:
    """One image at a time: decode, resize, ``model.predict`` (as the original project)."""
    from recommender.vision import images

    model = _keras_features(backbone)
    wall, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        x = images.to_model_input(images.open_image(path), backbone.input_size)
        model.predict(x[None], verbose=0)
    return len(paths), time.perf_counter() - wall, time.process_time() - cpu


_KERAS = {}


def _keras_features(backbone):
    if backbone.name not in _KERAS:
        import keras

        model = backbone._keras_model
        if model.output_shape[-1] != backbone.dim:
            model = keras.Model(model.input, model.get_layer("avg_pool").output)
        model.predict(
            np.zeros((1, backbone.input_size, backbone.input_size, 3), np.uint8), verbose=0
        )
        _KERAS[backbone.name] = model
    return _KERAS[backbone.name]


def original(backbone, paths, subset: int, batch_size: int, block: int = 100) -> list[dict]:
    rng = np.random.default_rng(0)
    chosen = [paths[i] for i in sorted(rng.choice(len(paths), subset, replace=False))]
    _keras_features(backbone)
    run_pipeline(chosen[:batch_size], backbone, batch_size=batch_size, thumb_size=128)
    old, new, ratios = [], [], []
    for i in range(0, subset, block):
        part = chosen[i : i + block]
        o = original_way(backbone, part)
        n = run_pipeline(part, backbone, batch_size=batch_size, thumb_size=128)
        old.append(o)
        new.append(n)
        ratios.append((n[0] / n[1]) / (o[0] / o[1]))

    def row(what, runs, ratio):
        arr = np.array(runs)
        return {
            "what": what,
            "images": int(arr[:, 0].sum()),
            "rate": float(arr[:, 0].sum() / arr[:, 1].sum()),
            "cpu_ms": 1000 * float(arr[:, 2].sum() / arr[:, 0].sum()),
            "ratio": ratio,
        }

    return [
        row("original: open, resize, model.predict per image", old, 1.0),
        row("pipeline (default settings, with thumbnails)", new, float(np.median(ratios))),
    ]


# -------------------------------------------------------------------------------- cache
@contextmanager
def cache_dir(path: Path):
    old = os.environ.get("HASHTAG_CACHE")
    os.environ["HASHTAG_CACHE"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HASHTAG_CACHE", None)
        else:
            os.environ["HASHTAG_CACHE"] = old


def write_manifest(root: Path, rows: list[tuple[str, str]]) -> None:
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "hashtags"])
        writer.writerows(rows)


def cache_rebuild(tmp: Path, share: float = 0.9) -> list[dict]:
    from recommender.build import build_model
    from recommender.data.datasets import load_dataset

    ds = load_dataset(DATASET)
    posts = [p for p in ds.posts if p.image]
    root = tmp / "posts"
    (root / "images").mkdir(parents=True)
    rows = []
    for i, post in enumerate(posts):  # copies: paths outside the root are refused
        name = f"images/{i:05d}.jpg"
        shutil.copyfile(ds.image_path(post), root / name)
        rows.append((name, " ".join(post.hashtags)))
    order = np.random.default_rng(0).permutation(len(rows))
    first = [rows[i] for i in sorted(order[: int(share * len(rows))])]

    def build(name: str, cache: str) -> dict:
        with cache_dir(tmp / cache):
            start = time.perf_counter()
            _rec, summary = build_model(root, tmp / name)
            summary["wall"] = time.perf_counter() - start
        return summary

    write_manifest(root, first)
    s90 = build("m90", "cache-a")
    write_manifest(root, rows)
    s_re = build("m100", "cache-a")
    s100 = build("m100-cold", "cache-b")

    def row(what, s):
        return {
            "what": what,
            "posts": s["posts"],
            "embedded": s["images_embedded"],
            "cached": s["images_from_cache"],
            "features_s": s["features_seconds"],
            "build_s": s["wall"],
            "ratio": s["wall"] / s100["wall"],
        }

    return [
        row(f"cold build of {share:.0%} of the posts", s90),
        row("rebuild after adding the other 10% (same cache)", s_re),
        row("cold build of 100% (empty cache)", s100),
    ]


# ------------------------------------------------------------------------------ classes
def features_only(backbone):
    """The forward pass before issue 13: the pooled-features model alone, compiled the same
    way (one traced ``tf.function``, L2-normalised output)."""
    from recommender.vision import backbones

    tf, keras = backbones._import_tf()
    full = backbone._keras_model
    model = keras.Model(full.input, full.get_layer("avg_pool").output)
    return backbones._compile(tf, model, backbone.input_size)


class _FeaturesOnly:
    """A stand-in backbone whose ``embed`` is the features-only pass (for the pipeline)."""

    def __init__(self, backbone) -> None:
        self.name, self.input_size, self.dim = backbone.name, backbone.input_size, backbone.dim
        self._fn = features_only(backbone)

    def embed(self, batch):
        return np.concatenate(
            [
                self._fn(np.ascontiguousarray(batch[i : i + 64]))[0].numpy()
                for i in range(0, len(batch), 64)
            ]
        )


def _with_classes(backbone):
    """``extract_features``' backbone, running the combined pass and keeping the top 5."""
    from recommender.vision.content import top_classes

    class WithClasses:
        name, input_size, dim = backbone.name, backbone.input_size, backbone.dim
        kept: list = []

        def embed(self, batch):
            features, probs = backbone.embed_with_classes(batch)
            self.kept.append(top_classes(probs))
            return features

    return WithClasses()


def classes_cost(
    backbone, paths, batch_size: int, blocks: int, batches: int, chunk: int
) -> list[dict]:
    from recommender.vision.content import top_classes

    old = features_only(backbone)
    batch = Ceiling(backbone, batch_size).batch
    old(batch), old(batch)

    def run_old():
        old(batch)[0].numpy()

    def run_new():
        top_classes(backbone.embed_with_classes(batch)[1])

    rates: dict[str, list[float]] = {"old": [], "new": []}
    for b in range(2 * blocks):
        which = ("old", "new")[(b + b // 2) % 2]  # old new new old old new ...
        fn = run_old if which == "old" else run_new
        start = time.perf_counter()
        for _ in range(batches):
            fn()
        rates[which].append(batches * batch_size / (time.perf_counter() - start))
    stand_ins = {"old": _FeaturesOnly(backbone), "new": _with_classes(backbone)}
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    run_pipeline(chunks[0][:batch_size], stand_ins["old"], batch_size=batch_size)
    run_pipeline(chunks[0][:batch_size], stand_ins["new"], batch_size=batch_size)
    pipe: dict[str, list[tuple]] = {"old": [], "new": []}
    for i, part in enumerate(chunks):
        for which in ("old", "new") if i % 2 == 0 else ("new", "old"):
            pipe[which].append(
                run_pipeline(part, stand_ins[which], batch_size=batch_size, thumb_size=128)
            )
    rows = []
    for which, label in (
        ("old", "features only (before issue 13)"),
        ("new", "features + class probabilities, top 5 kept"),
    ):
        arr = np.array(pipe[which])
        rows.append(
            {
                "what": f"backbone alone, batch {batch_size} in memory: {label}",
                "images": len(rates[which]) * batches * batch_size,
                "rate": float(np.median(rates[which])),
                "ratio": float(np.median(rates["old"]) / np.median(rates[which])),
            }
        )
        rows.append(
            {
                "what": f"pipeline over the data set: {label}",
                "images": int(arr[:, 0].sum()),
                "rate": float(arr[:, 0].sum() / arr[:, 1].sum()),
                "cpu_ms": 1000 * float(arr[:, 2].sum() / arr[:, 0].sum()),
                "ratio": float(
                    np.median(
                        [o[0] / o[1] / (n[0] / n[1]) for o, n in zip(pipe["old"], pipe["new"])]
                    )
                )
                if which == "new"
                else 1.0,
            }
        )
    return rows


def backbone_cost(backbone, other, paths, batch_size: int, chunk: int) -> list[dict]:
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    pair = {backbone.name: backbone, other.name: other}
    for b in pair.values():
        run_pipeline(chunks[0][:batch_size], b, batch_size=batch_size)
    runs: dict[str, list[tuple]] = {name: [] for name in pair}
    for i, part in enumerate(chunks):
        order = list(pair) if i % 2 == 0 else list(pair)[::-1]
        for name in order:
            runs[name].append(run_pipeline(part, pair[name], batch_size=batch_size, thumb_size=128))
    base = np.array(runs[backbone.name])
    rows = []
    for name, b in pair.items():
        arr = np.array(runs[name])
        per_chunk = (arr[:, 1] / arr[:, 0]) / (base[:, 1] / base[:, 0])
        rows.append(
            {
                "what": f"pipeline, {name} ({b.input_size} px)",
                "images": int(arr[:, 0].sum()),
                "rate": float(arr[:, 0].sum() / arr[:, 1].sum()),
                "cpu_ms": 1000 * float(arr[:, 2].sum() / arr[:, 0].sum()),
                "ratio": float(np.median(per_chunk)),
                "ratio_range": f"{np.percentile(per_chunk, 25):.2f}-"
                f"{np.percentile(per_chunk, 75):.2f}",
                "cpu_ratio": float(arr[:, 2].sum() / base[:, 2].sum()),
            }
        )
    return rows


# -------------------------------------------------------------------------------- build
def whole_build(backbone, batch_size: int, tmp: Path) -> list[dict]:
    from recommender.build import build_model

    ceiling = Ceiling(backbone, batch_size)
    c0 = ceiling.run(8)
    start, cpu = time.perf_counter(), time.process_time()
    _rec, summary = build_model(DATASET, tmp / "model", use_cache=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    c1 = ceiling.run(8)
    c_rate = (c0[0] / c0[1] + c1[0] / c1[1]) / 2
    return [
        {"what": "ceiling (mean of before and after)", "rate": c_rate, "ratio": 1.0},
        {
            "what": "build: features stage (no cache)",
            "images": summary["images_embedded"],
            "rate": summary["images_per_second"],
            "ratio": summary["images_per_second"] / c_rate,
            "seconds": summary["features_seconds"],
        },
        {"what": "build: whole command (load, features, ALS, save)", "seconds": wall, "cpu_s": cpu},
    ]


# ------------------------------------------------------------------------------- shards
def _embed_stage(paths, backbone, batch_size: int, tmp: Path) -> tuple[int, float, float]:
    from recommender.engines import EmbedJob
    from recommender.features.pipeline import embed_to_shards
    from recommender.features.shards import ShardStore

    store = ShardStore(Path(tempfile.mkdtemp(dir=tmp)), "bench")
    job = EmbedJob(list(paths), store, backbone.name, thumb_size=128, batch_size=batch_size)
    wall, cpu = time.perf_counter(), time.process_time()
    stats = embed_to_shards(job, backbone=backbone)
    assert stats.embedded == len(paths)
    out = len(paths), time.perf_counter() - wall, time.process_time() - cpu
    shutil.rmtree(store.folder)
    return out


class _Headless:
    """The backbone as the embed stage saw it before it kept classes: ``embed`` only (the
    same compiled forward pass; the probabilities it computes are dropped)."""

    def __init__(self, backbone) -> None:
        self.name, self.input_size, self.dim = backbone.name, backbone.input_size, backbone.dim
        self.embed = backbone.embed


def shards_vs_pipeline(backbone, paths, batch_size: int, chunk: int, tmp: Path) -> list[dict]:
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    run_pipeline(chunks[0][:batch_size], backbone, batch_size=batch_size, thumb_size=128)
    headless = _Headless(backbone)
    names = ["pipeline", "embed stage", "embed stage without classes"]
    got: dict[str, list] = {name: [] for name in names}
    ratios, class_ratios = [], []
    for i, part in enumerate(chunks):
        # rotate which goes first, so drift in the machine's load favours none
        order = names[i % 3 :] + names[: i % 3]
        rates = {}
        for name in order:
            if name == "pipeline":
                r = run_pipeline(part, backbone, batch_size=batch_size, thumb_size=128)
            elif name == "embed stage":
                r = _embed_stage(part, backbone, batch_size, tmp)
            else:
                r = _embed_stage(part, headless, batch_size, tmp)
            got[name].append(r)
            rates[name] = r[0] / r[1]
        ratios.append(rates["embed stage"] / rates["pipeline"])
        class_ratios.append(rates["embed stage"] / rates["embed stage without classes"])
    rows = []
    for name, runs in got.items():
        arr = np.array(runs)
        rows.append(
            {
                "what": f"{name} (chunks of {chunk}, thumbnails)",
                "images": int(arr[:, 0].sum()),
                "rate": float(arr[:, 0].sum() / arr[:, 1].sum()),
                "cpu_ms": 1000 * float(arr[:, 2].sum() / arr[:, 0].sum()),
            }
        )
    rows[1]["ratio"] = float(np.median(ratios))
    rows[1]["ratio_range"] = f"{np.percentile(ratios, 25):.2f}-{np.percentile(ratios, 75):.2f}"
    rows[0]["ratio"] = 1.0
    rows.append(
        {
            "what": "embed stage, rate with classes kept / without (same chunks)",
            "ratio": float(np.median(class_ratios)),
            "ratio_range": (
                f"{np.percentile(class_ratios, 25):.2f}-{np.percentile(class_ratios, 75):.2f}"
            ),
        }
    )
    return rows


_KILLABLE = """
import sys
from pathlib import Path
from recommender.data.datasets import load_dataset
from recommender.engines.embed_stage import dataset_features
from recommender.query.recommender import BuildConfig
def progress(stage, done, total):
    print("done", done, total, flush=True)
dataset_features(load_dataset({data!r}), BuildConfig(), progress=progress, shard_size={size},
                 cache_dir={cache!r})
"""


def resume_after_kill(tmp: Path, shard_size: int) -> list[dict]:
    import signal
    import subprocess
    import sys

    from recommender.data.datasets import load_dataset
    from recommender.engines.embed_stage import dataset_features
    from recommender.query.recommender import BuildConfig

    cache = tmp / "resume-cache"
    script = _KILLABLE.format(data=str(DATASET), size=shard_size, cache=str(cache))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    done = total = 0
    for line in proc.stdout:
        if line.startswith("done"):
            done, total = (int(v) for v in line.split()[1:3])
            if done >= total // 2:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait()
    for line in proc.stdout.read().splitlines():
        if line.startswith("done"):
            done = int(line.split()[1])
    feats = dataset_features(
        load_dataset(DATASET), BuildConfig(), shard_size=shard_size, cache_dir=cache
    )
    kept = feats.counts["images_from_cache"]
    return [
        {
            "what": f"SIGKILL at {done}/{total} images, shards of {shard_size}",
            "killed_at": done,
            "kept": kept,
            "embedded_again": feats.counts["images_embedded"],
            "lost": done - kept,
        }
    ]


RESUME_COLUMNS = [
    ("what", "run", ""),
    ("killed_at", "images done when killed", ""),
    ("kept", "kept (committed shards)", ""),
    ("embedded_again", "embedded on resume", ""),
    ("lost", "work lost (re-embedded)", ""),
]


COLUMNS = [
    ("what", "what", ""),
    ("images", "images", ""),
    ("rate", "images/s", ".1f"),
    ("cpu_ms", "CPU ms/image", ".1f"),
    ("ratio", "ratio (median)", ".2f"),
    ("ratio_range", "ratio IQR", ""),
    ("cpu_ratio", "CPU-time ratio", ".2f"),
    ("seconds", "seconds", ".1f"),
]
CACHE_COLUMNS = [
    ("what", "build", ""),
    ("posts", "posts", ""),
    ("embedded", "images embedded", ""),
    ("cached", "from cache", ""),
    ("features_s", "features s", ".1f"),
    ("build_s", "build s", ".1f"),
    ("ratio", "time / cold 100%", ".2f"),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", default=list(DEFAULT_SECTIONS), choices=SECTIONS)
    parser.add_argument(
        "--compare-backbone",
        default="efficientnet_lite1",
        help="for 'backbones': the backbone to compare with the default",
    )
    parser.add_argument("--blocks", type=int, default=10, help="for 'classes': blocks of each")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=None,
        help="decoding threads to compare (default: the BuildConfig default)",
    )
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--chunk", type=int, default=330, help="images per pipeline chunk")
    parser.add_argument("--ceiling-batches", type=int, default=3)
    parser.add_argument("--subset", type=int, default=200, help="images for 'original'")
    parser.add_argument("--shard-size", type=int, default=500, help="for the resume")
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first LIMIT images of the data set"
    )
    args = parser.parse_args(argv)

    from recommender.query.recommender import BuildConfig
    from recommender.vision.backbones import get_backbone

    config = BuildConfig()
    batch_size = args.batch_size or config.batch_size
    workers = args.workers or [config.workers]
    backbone = get_backbone(config.backbone, config.weights)
    paths = dataset_images(DATASET)[: args.limit]
    print(f"{len(paths)} images, backbone {backbone.name} ({backbone.weights})")
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        tmp = Path(tmp)
        if "throughput" in args.sections:
            header("Feature extraction throughput against the backbone alone")
            print(
                table(
                    throughput(
                        backbone, paths, workers, batch_size, args.chunk, args.ceiling_batches
                    ),
                    COLUMNS,
                ),
                flush=True,
            )
        if "original" in args.sections:
            header(f"Against the original per-image model.predict ({args.subset} images)")
            print(table(original(backbone, paths, args.subset, batch_size), COLUMNS), flush=True)
        if "cache" in args.sections:
            header("Rebuild with the feature cache after adding 10% new posts")
            print(table(cache_rebuild(tmp), CACHE_COLUMNS), flush=True)
        if "build" in args.sections:
            header("Whole build of the demo data set (use_cache=False)")
            print(table(whole_build(backbone, batch_size, tmp), COLUMNS), flush=True)
        if "shards" in args.sections:
            header("The embed stage (shards) against the plain pipeline, same chunks")
            print(
                table(shards_vs_pipeline(backbone, paths, batch_size, args.chunk, tmp), COLUMNS),
                flush=True,
            )
            header("Resume after SIGKILL at 50% of the embed stage")
            print(table(resume_after_kill(tmp, args.shard_size), RESUME_COLUMNS), flush=True)
        if "classes" in args.sections:
            header("What the class probabilities cost the build (ratio: time, new over old)")
            print(
                table(
                    classes_cost(
                        backbone, paths, batch_size, args.blocks, args.ceiling_batches, args.chunk
                    ),
                    COLUMNS,
                ),
                flush=True,
            )
        if "backbones" in args.sections:
            other = get_backbone(args.compare_backbone)
            header(
                f"Extraction cost of {other.name} against {backbone.name} "
                "(ratio: time per image; CPU-time ratio: CPU per image)"
            )
            print(
                table(backbone_cost(backbone, other, paths, batch_size, args.chunk), COLUMNS),
                flush=True,
            )


if __name__ == "__main__":
    main()
