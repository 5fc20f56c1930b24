"""Shared fixtures: the real data set (skipped only where absent) and the model built on it
once per test run, the tiny known-answer data set and model (no TensorFlow), and the hook
that marks each test by what it needs (`dataset`, `spark`, `browser`, `tensorflow`), so
`make test-fast` can leave the heavy tiers out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
DATASET = Path(
    os.environ.get("HASHTAG_DATASET") or REPO.parent / "shared" / "datasets" / "instagram-2019"
)


# The markers a test gets when it uses one of these fixtures (directly or through another
# fixture: item.fixturenames is the whole closure). The demo model is built and queried
# with the real network.
FIXTURE_MARKERS = {
    "dataset_path": ("dataset",),
    "demo_build": ("dataset", "tensorflow"),
    "demo_model": ("dataset", "tensorflow"),
    "spark_session": ("spark",),
    "spark_cluster": ("spark",),
}


def pytest_collection_modifyitems(config, items):
    """Mark each test by the heavy things it needs, from the fixtures it uses; tests that
    use TensorFlow or a browser without a fixture carry the marker themselves."""
    for item in items:
        names = set(item.fixturenames)
        for fixture, markers in FIXTURE_MARKERS.items():
            if fixture in names:
                for marker in markers:
                    item.add_marker(marker)


@pytest.fixture(scope="session")
def dataset_path() -> Path:
    """The real instagram-2019 data set ($HASHTAG_DATASET); skips only when it is absent."""
    if not (DATASET / "json_files").is_dir():
        if os.environ.get("HASHTAG_REQUIRE_DATASET"):
            pytest.fail(f"HASHTAG_REQUIRE_DATASET is set but there is no data set at {DATASET}")
        pytest.skip(f"real data set not found at {DATASET} (set HASHTAG_DATASET)")
    return DATASET


@pytest.fixture(scope="session")
def feature_cache_dir(tmp_path_factory) -> Path:
    """A feature cache private to this test run, so every run extracts for real once."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["HASHTAG_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def demo_build(dataset_path, feature_cache_dir, tmp_path_factory):
    """The demo model built from the real data set with default settings: (path, summary)."""
    from recommender.build import build_model

    out = tmp_path_factory.mktemp("models") / "demo"
    _rec, summary = build_model(dataset_path, out)
    return out, summary


@pytest.fixture(scope="session")
def demo_model(demo_build):
    """The demo model, loaded the way the page and the CLI load it."""
    from recommender import HashtagRecommender

    return HashtagRecommender.load(demo_build[0])


@pytest.fixture(scope="session")
def spark_session():
    """One local[2] SparkSession for the whole run (quiet: Spark's output goes to its log
    file); skipped without pyspark or Java, failed instead under HASHTAG_REQUIRE_SPARK=1."""
    try:
        from recommender.engines import spark as spark_engine

        spark_engine.require_pyspark()
        if not spark_engine._java_available():
            raise spark_engine.SparkError("Java is missing")
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("HASHTAG_REQUIRE_SPARK"):
            pytest.fail(f"HASHTAG_REQUIRE_SPARK is set but Spark cannot run: {exc}")
        pytest.skip(f"Spark cannot run here: {exc}")
    session = spark_engine.get_session("local[2]")
    yield session
    session.stop()


# -- the tiny known-answer data set and model (no TensorFlow, no real data) ------------------
# Like implicit's checker board: twelve posts in three colour themes whose right hashtags are
# known, embedded by a stand-in backbone that turns a flat-colour image into a known vector.

TINY_BACKBONE = "flat_colour_test"
TINY_DIM = 8
# theme -> (the colour of its photos, the hashtags every post of the theme carries)
TINY_THEMES = {
    "red": ((210, 40, 40), ("strawberry", "fruit", "red")),
    "green": ((40, 170, 60), ("forest", "hiking", "green")),
    "blue": ((40, 60, 210), ("sea", "beach", "blue")),
}
TINY_PER_THEME = 4


def colour_vector(rgb) -> np.ndarray:
    """The stand-in backbone's feature vector of a flat image of colour ``rgb``: the colour
    centred on mid-grey, L2-normalised, in the first three of :data:`TINY_DIM` places."""
    v = np.zeros(TINY_DIM, np.float32)
    v[:3] = np.asarray(rgb, np.float32) - 127.5
    return v / max(float(np.linalg.norm(v)), 1e-6)


class _Out:
    """What the stand-in's forward pass returns per output: TensorFlow's ``.numpy()``."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def numpy(self) -> np.ndarray:
        return self._array


def _flat_colour_forward(batch: np.ndarray):
    means = np.asarray(batch, np.float32).mean(axis=(1, 2))
    return (_Out(np.stack([colour_vector(m) for m in means]).reshape(len(batch), TINY_DIM)),)


def _build_flat_colour(weights):
    from recommender.vision.backbones import Backbone

    return Backbone(
        name=TINY_BACKBONE,
        input_size=32,
        dim=TINY_DIM,
        weights="flat colour (test stand-in)",
        weights_sha256="flat-colour-test",
        _forward=_flat_colour_forward,
    )


@pytest.fixture(scope="session")
def tiny_backbone():
    """The stand-in backbone, registered under :data:`TINY_BACKBONE` for the whole run (so
    ``get_backbone``, ``BuildConfig`` and ``--backbone`` take it); returns it. The module's
    registry is replaced by a copy, so what tests imported before (the real three) stays."""
    from recommender.vision import backbones

    spec = backbones.BackboneSpec(TINY_BACKBONE, 32, _build_flat_colour, None)
    backbones.REGISTRY = {**backbones.REGISTRY, TINY_BACKBONE: spec}
    backbones.BACKBONES = tuple(backbones.REGISTRY)
    return backbones.get_backbone(TINY_BACKBONE)


def tiny_photo(path: Path, theme: str, i: int = 0) -> Path:
    """A flat JPEG in ``theme``'s colour (a shade ``i`` steps off it)."""
    from PIL import Image

    r, g, b = TINY_THEMES[theme][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48 + i, 40), (r + 3 * i, g + 2 * i, b - 2 * i)).save(path, quality=95)
    return path


def write_manifest(root: Path, rows) -> Path:
    """``root/posts.csv``, a CSV manifest of ``rows`` (dicts of image and hashtags); ``root``."""
    import csv

    with open(root / "posts.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["image", "hashtags"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def count_decodes(monkeypatch) -> list:
    """A list that gets one item per image decode (recommender.vision.images._decode)."""
    from recommender.vision import images

    calls: list = []
    decode = images._decode

    def counted(*args, **kw):
        calls.append(1)
        return decode(*args, **kw)

    monkeypatch.setattr(images, "_decode", counted)
    return calls


def write_tiny_dataset(root: Path, extra_rows=()) -> Path:
    """The tiny data set in ``root``: a CSV manifest of :data:`TINY_PER_THEME` photos per
    theme, each post tagged with its theme's hashtags plus one of its own, then
    ``extra_rows``."""
    rows = []
    for theme, (_rgb, tags) in TINY_THEMES.items():
        for i in range(TINY_PER_THEME):
            tiny_photo(root / "photos" / f"{theme}{i}.jpg", theme, i)
            own = f"{theme}{i}"
            rows.append(
                {
                    "image": f"photos/{theme}{i}.jpg",
                    "hashtags": " ".join(f"#{t}" for t in tags) + f" #{own}",
                }
            )
    return write_manifest(root, [*rows, *extra_rows])


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """The tiny known-answer data set (12 posts, read-only: copy it to change it)."""
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="session")
def tiny_build(tiny_dataset, tiny_backbone, feature_cache_dir, tmp_path_factory):
    """The model built from the tiny data set with the stand-in backbone: (path, summary)."""
    from recommender.build import build_model
    from recommender.config import ALSParams, BuildConfig

    out = tmp_path_factory.mktemp("models") / "tiny"
    config = BuildConfig(backbone=TINY_BACKBONE, als=ALSParams(factors=4, iterations=10))
    _rec, summary = build_model(tiny_dataset, out, config)
    return out, summary


@pytest.fixture(scope="session")
def tiny_model(tiny_build):
    """The tiny model, loaded the way the page and the CLI load it."""
    from recommender import HashtagRecommender

    return HashtagRecommender.load(tiny_build[0])


def real_photo_manifest(dataset, root: Path, per_category: int, extra_rows=()) -> Path:
    """A CSV manifest data set in ``root``: the first ``per_category`` real food and animal
    photos with 4+ hashtags, copied with their real tag lists, then ``extra_rows``."""
    import json
    import shutil

    (root / "photos").mkdir(parents=True)
    rows = []
    for category in ("food", "animals"):
        records = json.loads((dataset / "json_files" / f"{category}.json").read_text())
        picked = [
            r
            for r in records
            if len(r["hashtags"]) > 3
            and (dataset / "data" / category / r["image_local_name"]).is_file()
        ][:per_category]
        for r in picked:
            src = dataset / "data" / category / r["image_local_name"]
            shutil.copy(src, root / "photos" / src.name)
            rows.append({"image": f"photos/{src.name}", "hashtags": " ".join(r["hashtags"])})
    return write_manifest(root, [*rows, *extra_rows])


def copy_real_photos(dataset, folder: Path, n: int, name: str = "{}.jpg") -> list[Path]:
    """The data set's first ``n`` photos (by path) copied into ``folder`` as
    ``name.format(i)``: real images for the engines' and backbones' tests."""
    paths = []
    for i, src in enumerate(sorted((dataset / "data").rglob("*.jpg"))[:n]):
        paths.append(folder / name.format(i))
        paths[-1].write_bytes(src.read_bytes())
    return paths


def flat_colour(i: int) -> tuple[int, int, int]:
    """The colour of :func:`flat_photos`' image ``i``."""
    return (40 + 7 * i % 200, 200 - 5 * i % 180, 30 + 11 * i % 220)


def flat_photos(folder: Path, n: int = 23) -> list[Path]:
    """``n`` small JPEGs of distinct flat colours (``flat_colour(i)``), plus one broken file
    at position 5."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:02d}.jpg"
        Image.new("RGB", (40 + i, 30), flat_colour(i)).save(path, quality=95)
        paths.append(path)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    paths.insert(5, folder / "broken.jpg")
    return paths


def check_hedged_is_plain_without(plain, hedged, rec, gone: set[int]) -> int:
    """Assert ``hedged`` (a hedged recommendation) is ``plain`` (the same query unhedged, a
    longer list) without the tags of the categories ``gone``, scores unchanged; return how
    many of ``plain``'s tags those categories held."""
    cat_of = {t: int(c) for t, c in zip(rec.tags, rec.hedge.tag_category)}
    scores = {t.tag: t.score for t in plain.hashtags}
    for t in hedged.hashtags:  # same score, same exact explanation
        assert t.score == pytest.approx(scores[t.tag], abs=1e-6)
        assert sum(t.contributions) + t.prior + t.content == pytest.approx(t.score, abs=1e-5)
    kept = [t for t in plain.tags if cat_of[t] not in gone]
    # the plain ranking without those categories (equal scores may trade places)
    assert set(hedged.tags) <= set(kept)
    assert [scores[t] for t in hedged.tags] == pytest.approx(
        [scores[t] for t in kept[: len(hedged.tags)]], abs=1e-6
    )
    return len(plain.tags) - len(kept)


# MDN's example web app manifest (developer.mozilla.org/en-US/docs/Web/Manifest, "Example
# manifest"): a real `manifest.json` that sits at the top of many people's project folders.
WEB_APP_MANIFEST = {
    "name": "HackerWeb",
    "short_name": "HackerWeb",
    "start_url": ".",
    "display": "standalone",
    "background_color": "#fff",
    "description": "A readable Hacker News app.",
    "icons": [{"src": "images/touch/homescreen48.png", "sizes": "48x48", "type": "image/png"}],
    "related_applications": [
        {
            "platform": "play",
            "url": "https://play.google.com/store/apps/details?id=cheeaun.hackerweb",
        }
    ],
}


def someones_project(folder: Path) -> dict[Path, bytes]:
    """A folder of someone's own work that holds a web app's ``manifest.json``: no build may
    delete it. Returns every file's bytes, to check that all are still there after."""
    import json

    files = {
        folder / "manifest.json": json.dumps(WEB_APP_MANIFEST, indent=2).encode(),
        folder / "thesis.tex": b"\\documentclass{article}\\begin{document}Mine.\\end{document}\n",
        folder / "src" / "app.js": b"console.log('hello');\n",
        folder / "photos" / "keep.txt": b"do not delete\n",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def unchanged(files: dict[Path, bytes]) -> bool:
    return all(p.is_file() and p.read_bytes() == data for p, data in files.items())


# A real standalone Spark cluster (a master and two workers) for the tests that need one.
from spark_cluster import spark_cluster  # noqa: E402, F401


def rewrite_manifest(folder: Path, manifest: dict) -> None:
    """Edit a model's manifest by hand as a user could: the manifest and its checksum file
    (``manifest.sha256``) together, so that what a test changes is read, not refused as
    damage."""
    import hashlib

    raw = json.dumps(manifest).encode()
    (Path(folder) / "manifest.json").write_bytes(raw)
    digest = Path(folder) / "manifest.sha256"
    if digest.exists() or manifest.get("format_version", 0) >= 3:
        digest.write_text(f"{hashlib.sha256(raw).hexdigest()}  manifest.json\n")


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``cli.main`` on ``args``: (exit code, stdout, stderr); argparse's exits included."""
    try:
        from recommender import cli

        code = cli.main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err
