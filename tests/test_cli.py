"""The command line as a user runs it: ``cli.main(argv)`` in this process (one subprocess
smoke test checks ``python -m recommender`` itself)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    TINY_BACKBONE,
    rewrite_manifest,
    someones_project,
    tiny_photo,
    unchanged,
    write_tiny_dataset,
)
from conftest import (
    run_cli as run,
)
from PIL import Image

from recommender import cli
from recommender.query.scoring import DEFAULT_NEIGHBOURS

REPO = Path(__file__).resolve().parent.parent


# The tiny known-answer data set (tests/conftest.py: 12 flat-colour photos in three themes,
# embedded by a stand-in backbone) with two more rows, so every build here takes a second.
TINY = ["--backbone", TINY_BACKBONE]


@pytest.fixture(scope="module")
def small_dataset(tiny_backbone, tmp_path_factory) -> Path:
    """The tiny data set plus a post without an image and a record the build refuses."""
    extra = [
        {"image": "", "hashtags": "#strawberry #fruit #homemade"},  # a post without image
        {"image": "../outside.jpg", "hashtags": "#sneaky"},  # refused, counted
    ]
    return write_tiny_dataset(tmp_path_factory.mktemp("small"), extra)


@pytest.fixture(scope="module")
def small_model(small_dataset, tmp_path_factory, feature_cache_dir) -> Path:
    out = tmp_path_factory.mktemp("cli") / "model"
    args = ["build", str(small_dataset), "--out", str(out), "--factors", "8", "--quiet", *TINY]
    assert cli.main(args) == 0
    return out


def test_python_m_recommender_runs_the_same_cli(small_model):
    """The one subprocess: the entry point people type, on a built model."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "recommender", "info", str(small_model)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert TINY_BACKBONE in proc.stdout and "posts=13" in proc.stdout


def test_help_lists_the_subcommands_and_defaults(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for word in ("build", "recommend", "evaluate", "info"):
        assert word in out
    code, out, _ = run(capsys, "build", "--help")
    assert code == 0 and "--factors" in out and "(default: " in out


def test_every_option_says_what_it_is_and_build_defaults_are_the_config_defaults():
    """The build and evaluate options come from BuildConfig's and ALSParams' fields."""
    import argparse

    from recommender.config import ALSParams, BuildConfig

    parser = cli.build_parser()
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    args = parser.parse_args(["build"])
    als = cli.config_from_args(ALSParams, args)
    assert cli.config_from_args(BuildConfig, args, als=als) == BuildConfig()
    args = parser.parse_args(["build", "--seed", "7", "--thumb-size", "64", "--weighting", "none"])
    config = cli.config_from_args(BuildConfig, args, als=cli.config_from_args(ALSParams, args))
    assert (config.als.random_state, config.thumb_size, config.als.weighting) == (7, 64, "none")
    args = parser.parse_args(["evaluate", "--seed", "3"])  # evaluate's seed: its splits'
    assert args.seed == 3 and cli.config_from_args(BuildConfig, args) == BuildConfig()


def test_build_reports_what_it_read(small_dataset, tmp_path, capsys, feature_cache_dir):
    out = tmp_path / "model"
    code, stdout, _ = run(capsys, "build", small_dataset, "--out", out, "--factors", "4",
                          "--iterations", "2", "--quiet", *TINY)  # fmt: skip
    assert code == 0
    assert f"Model written to {out}" in stdout
    assert "posts: 13  images indexed: 12" in stdout
    assert "outside" in stdout  # the refused record is reported
    assert "from cache: 12" in stdout  # the module's model embedded them already


def test_build_info_recommend_on_a_small_manifest(small_model, tmp_path, capsys):
    code, out, err = run(capsys, "info", small_model)
    assert code == 0, err
    assert TINY_BACKBONE in out and "manifest" in out
    assert "hedging:" not in out  # a data set without categories: nothing to calibrate
    code, out, _ = run(capsys, "info", small_model, "--json")
    info = json.loads(out)
    assert info["counts"]["images"] == 12
    assert info["config"]["als"]["factors"] == 8

    red = tiny_photo(tmp_path / "red.jpg", "red", 1)
    code, out, err = run(capsys, "recommend", red, "--model", small_model, "-n", "3", "-k", "5")
    assert code == 0, err
    assert "#strawberry" in out and "#sea" not in out.split("photos/")[0]
    assert out.count("photos/red") == 3  # three neighbours listed, all red
    assert "the network" not in out  # the stand-in has no ImageNet head: no classes named


def test_recommend_info_and_serve_describe_every_option():
    parser = cli.build_parser()
    [sub] = [a for a in parser._actions if a.dest == "command"]
    for name in ("recommend", "info", "serve"):
        for action in sub.choices[name]._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings or action.dest}"


def test_info_shows_the_evaluation_in_readable_lines(small_model, tmp_path, capsys):
    model = tmp_path / "evaluated"
    shutil.copytree(small_model, model)
    manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    manifest["evaluation"] = {
        "method": "profiles_prior",
        "recall@10": 0.1765,
        "popularity_recall@10": 0.0918,
        "off_topic@5": 0.9012,
        "splits": 5,
        "test_posts": 220,
        "methods": {"original": {"recall@10": 0.1523}},
    }
    rewrite_manifest(model, manifest)
    code, out, err = run(capsys, "info", model)
    assert code == 0, err
    lines = out[out.index("evaluation:") :].splitlines()
    assert lines[1].split() == ["method", "profiles_prior"]
    assert ["recall@10", "0.1765"] in [line.split() for line in lines]
    assert ["original", "method", "recall@10", "0.1523"] in [line.split() for line in lines]
    assert ["off_topic@5", "0.9012"] in [line.split() for line in lines]
    assert "{" not in out[out.index("evaluation:") :]  # no raw JSON


def test_recommend_json_schema_on_the_demo_model(demo_build, dataset_path, capsys):
    path, _ = demo_build
    photos = sorted((dataset_path / "test").glob("*.jpg"))
    code, out, err = run(capsys, "recommend", *photos, "--model", path, "-n", "4", "-k", "6",
                         "--json")  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["image"] for line in lines] == [str(p) for p in photos]
    for line in lines:
        assert len(line["hashtags"]) == 6 and len(line["neighbors"]) == 4
        for tag in line["hashtags"]:
            assert {"tag", "score", "prior", "content"} <= set(tag)
            assert not tag["tag"].startswith("#")
        assert line["seen"] and {"class", "probability"} == set(line["seen"][0])
        # best first, except that hedging may move an uncertain other category's search tag
        # below the top 5 with its score (and says so, with its probability)
        scores = [t["score"] for t in line["hashtags"] if not t["moved_down"]]
        assert scores == sorted(scores, reverse=True)
        moved = [t["tag"] for t in line["hashtags"][:5] if t["moved_down"]]
        assert not moved or all(t["moved_down"] for t in line["hashtags"][:5])
        explained = {s["tag"]: s for s in line["search_tags"] if s["kept"]}
        for tag in line["hashtags"]:
            if tag["moved_down"]:
                assert explained[tag["tag"]]["moved_down"] and explained[tag["tag"]]["probability"]
        for nb in line["neighbors"]:
            assert (dataset_path / nb["image"]).is_file()
            assert -1 <= nb["similarity"] <= 1 and isinstance(nb["hashtags"], list)
    by_name = {Path(line["image"]).stem: line for line in lines}
    assert "food" in [t["tag"] for t in by_name["food"]["hashtags"]]
    code, out, _ = run(capsys, "recommend", photos[0], "--model", path)
    # the ImageNet classes, as text: named when the head is sure, else "maybe"
    assert code == 0 and re.search(r"^  the network (sees: |is not sure \(maybe: )\w", out, re.M)


def test_a_bad_image_is_one_line_and_a_nonzero_exit_but_the_rest_is_answered(
    small_model, tmp_path, capsys
):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo")
    good = tiny_photo(tmp_path / "blue.jpg", "blue")
    code, out, _ = run(capsys, "recommend", bad, good, "--model", small_model, "--json")
    assert code == 1
    first, second = (json.loads(line) for line in out.splitlines())
    assert "not an image" in first["error"]
    assert second["hashtags"]
    code, _, err = run(capsys, "recommend", bad, "--model", small_model)
    assert code == 1
    assert err.strip().count("\n") == 0 and "Traceback" not in err


def test_recommend_reads_an_iphone_heic_photo(small_model, tmp_path, capsys):
    """HEIC, the iPhone's default format (issue 23), made here with pillow-heif's encoder."""
    pytest.importorskip("pillow_heif")
    import recommender.vision.images  # noqa: F401 - registers the HEIF plugin

    photo = tmp_path / "IMG_0042.HEIC"
    Image.open(tiny_photo(tmp_path / "red.jpg", "red", 1)).save(photo, "HEIF", quality=90)
    code, out, err = run(capsys, "recommend", photo, "--model", small_model, "-k", "5")
    assert code == 0, err
    assert "#strawberry" in out


def test_missing_or_damaged_model_says_how_to_rebuild(small_model, tmp_path, capsys):
    food = tiny_photo(tmp_path / "red.jpg", "red")
    code, _, err = run(capsys, "recommend", food, "--model", tmp_path / "none")
    assert code == 1 and "python -m recommender build" in err
    broken = tmp_path / "broken"
    shutil.copytree(small_model, broken)
    (broken / "arrays.npz").write_bytes(b"garbage")
    code, _, err = run(capsys, "info", broken)
    assert code == 1 and "damaged" in err


def test_a_data_set_with_nothing_usable_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "posts.jsonl").write_text('{"image": "", "hashtags": []}\nnot json\n')
    code, _, err = run(capsys, "build", tmp_path / "posts.jsonl", "--out", tmp_path / "m",
                       "--quiet")  # fmt: skip
    assert code == 1 and "no usable posts" in err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "option",
    [
        ["--batch-size", "0"],
        ["--batch-size", "-3"],
        ["--workers", "-1"],
        ["--workers", "0"],
        ["--thumb-size", "-1"],
        ["--thumb-size", "abc"],
        ["--factors", "0"],
        ["--iterations", "0"],
        ["--regularization", "-1"],
        ["--alpha", "0"],
        ["--alpha", "nan"],
        ["--alpha", "inf"],
        ["--min-support", "0"],
        ["--seed", "-1"],
        ["--evaluate", "-2"],
    ],
)
def test_build_refuses_an_out_of_range_number_and_writes_nothing(
    option, small_dataset, tmp_path, capsys
):
    out = tmp_path / "model"
    code, stdout, err = run(capsys, "build", small_dataset, "--out", out, "--quiet", *option, *TINY)
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert option[0] in line and "Traceback" not in err
    assert not out.exists() and stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["recommend", "x.jpg", "-n", "0"],
        ["recommend", "x.jpg", "-n", "51"],
        ["recommend", "x.jpg", "-k", "0"],
        ["recommend", "x.jpg", "-k", "31"],  # Instagram takes at most 30 hashtags a post
        ["recommend", "x.jpg", "--bogus"],
        ["evaluate", "x", "--splits", "0"],
        ["evaluate", "x", "--test-fraction", "1"],
        ["evaluate", "x", "--test-fraction", "0"],
        ["evaluate", "x", "--neighbors", "5", "0"],
        ["evaluate", "x", "--neighbors", "51"],
    ],
)
def test_other_commands_refuse_bad_options_in_one_line(args, capsys):
    code, _, err = run(capsys, *args)
    assert code == 2 and "Traceback" not in err
    assert ": error: " in err.strip().splitlines()[-1]


@pytest.mark.parametrize("engine", ["local", "spark"])
def test_build_evaluate_says_and_records_that_its_models_use_the_local_als(
    engine, small_dataset, tmp_path, capsys, monkeypatch, feature_cache_dir
):
    """build --evaluate fits the evaluation's models with the local ALS whatever --engine
    says: one line on stderr when the engine is another, and evaluation.als in the manifest.
    (Spark stands in as the local engine here: only the choice of engine matters.)"""
    from recommender import engines

    monkeypatch.setattr(cli, "_start_spark", lambda args: None)
    monkeypatch.setitem(engines.ENGINES, "spark", engines.LocalEngine)
    out = tmp_path / "model"
    code, _, err = run(capsys, "build", small_dataset, "--out", out, "--engine", engine,
                       "--evaluate", "2", "--factors", "4", "--quiet", *TINY)  # fmt: skip
    assert code == 0
    said = [line for line in err.splitlines() if "--evaluate fits its models" in line]
    assert said == ([] if engine == "local" else [
        "--evaluate fits its models with the local ALS (implicit), not the spark engine's; "
        "the manifest records it as evaluation.als"
    ])  # fmt: skip
    evaluation = json.loads((out / "manifest.json").read_text())["evaluation"]
    assert evaluation["als"] == "local" and evaluation["splits"] == 2
    assert {"popularity", evaluation["method"], "original"} <= set(evaluation["methods"])


def test_both_spellings_of_the_neighbours_flag_set_the_same_option():
    """The API says "neighbour"; the flags --neighbors (as before) and --neighbours are one."""
    parser = cli.build_parser()
    for flag in ("-n", "--neighbors", "--neighbours"):
        assert parser.parse_args(["recommend", "x.jpg", flag, "7"]).n == 7
    for flag in ("--neighbors", "--neighbours"):
        assert parser.parse_args(["evaluate", "x", flag, "5", "9"]).neighbours == [5, 9]
    assert parser.parse_args(["evaluate", "x"]).neighbours == [DEFAULT_NEIGHBOURS, 30]


def test_recommend_offers_as_many_hashtags_as_instagram_takes_and_the_page_offers():
    """Instagram takes at most 30 hashtags a post (issue 23's sources): -k goes up to 30,
    as the page's k slider does."""
    from recommender.data.hashtags import INSTAGRAM_MAX_HASHTAGS
    from recommender.ui.presentation import K_RANGE

    args = cli.build_parser().parse_args(["recommend", "x.jpg", "-k", "30"])
    assert args.k == 30 == INSTAGRAM_MAX_HASHTAGS == K_RANGE[1]


def test_build_refuses_a_folder_with_a_web_app_manifest_before_any_work(
    small_dataset, tmp_path, capsys, monkeypatch
):
    """A folder with someone's ``manifest.json`` was once replaced, everything in it lost."""
    import recommender.build as build

    files = someones_project(tmp_path / "site")
    monkeypatch.setattr(build, "read_stage", lambda *a, **k: pytest.fail("worked first"))
    code, stdout, err = run(capsys, "build", small_dataset, "--out", tmp_path / "site")
    assert code != 0 and "Traceback" not in err
    assert "not this project's" in err.strip().splitlines()[-1]
    assert unchanged(files)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_skip_existing_leaves_a_loadable_model_alone(small_model, small_dataset, capsys):
    before = (small_model / "manifest.json").read_bytes()
    code, out, _ = run(capsys, "build", small_dataset, "--out", small_model, "--skip-existing",
                       *TINY)  # fmt: skip
    assert code == 0 and "not rebuilding" in out
    assert (small_model / "manifest.json").read_bytes() == before


def test_an_als_that_diverges_is_a_one_line_fit_error(small_dataset, tmp_path, capsys):
    """A real FitError: an absurd confidence scale makes ALS produce NaN factors."""
    out = tmp_path / "model"
    code, _, err = run(capsys, "build", small_dataset, "--out", out, "--alpha", "1e30",
                       "--quiet", *TINY)  # fmt: skip
    assert code == 1
    assert err.startswith("error: ALS failed") and err.count("\n") == 1
    assert "lower alpha" in err and not out.exists()


def test_the_cli_lets_a_bug_show_rather_than_hiding_it_as_a_message(
    small_dataset, tmp_path, monkeypatch, capsys
):
    """Only errors raised on purpose (RecommenderError) become one-line messages."""
    import recommender.build

    def broken(*_args, **_kwargs):
        raise ValueError("a programming error")

    monkeypatch.setattr(recommender.build, "build_model", broken)
    with pytest.raises(ValueError, match="a programming error"):
        cli.main(["build", str(small_dataset), "--out", str(tmp_path / "m"), "--quiet", *TINY])


def test_evaluate_prints_a_table_writes_json_and_a_plot(small_dataset, tmp_path, capsys):
    plot = tmp_path / "curves.png"
    args = ["evaluate", small_dataset, "--splits", "1", "--method", "knn_vote",
            "--methods", "knn_vote", "--neighbors", "3", "--quiet", *TINY]  # fmt: skip
    code, out, err = run(capsys, *args, "--plot", plot)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert "recall@10" in header and "precision@5" in header
    assert rows[0].startswith(" popularity") and rows[1].startswith("*knn_vote")
    assert "ceiling recall@10" in out and f"plot written to {plot}" in out
    assert plot.stat().st_size > 1000
    with Image.open(plot) as img:
        assert img.format == "PNG" and img.size == (990, 660)  # 9 x 6 in at 110 dpi

    code, out, _ = run(capsys, *args, "--json")
    result = json.loads(out)
    assert set(result["methods"]) == {"popularity", "knn_vote"}
    assert result["splits"] == 1 and result["test_posts"][0] >= 1
    knn = result["methods"]["knn_vote"]
    assert 0 <= knn["recall@10"] <= 1 and knn["recall@10_std"] == 0  # one split: no spread
    assert len(knn["recall_curve"]) == 20
    assert knn["recall_curve"] == sorted(knn["recall_curve"])  # recall@k never falls with k


def test_recommend_csv_one_row_per_image_and_rank(tiny_build, tiny_model, tmp_path, capsys):
    from recommender import cli
    from recommender.data.hashtags import load_blocklist

    photos = [tiny_photo(tmp_path / f"{t}.jpg", t, 1) for t in ("red", "green", "blue")]
    bad = tmp_path / "README.md"  # not an image
    bad.write_text("# notes\n")
    images = [str(photos[0]), str(bad), *map(str, photos[1:])]
    status = cli.main(
        ["recommend", *images, "--model", str(tiny_build[0]), "-k", "4", "--format", "csv"]
    )
    out = capsys.readouterr().out
    assert status == 1  # a bad image, and the others still answered
    rows = list(csv.DictReader(out.splitlines()))
    assert list(rows[0]) == ["image", "rank", "hashtag", "score", "posts", "tier", "error"]
    assert [r["image"] for r in rows] == [images[0]] * 4 + [images[1]] + [images[2]] * 4 + [
        images[3]
    ] * 4
    [bad_row] = [r for r in rows if r["error"]]
    assert bad_row["rank"] == bad_row["hashtag"] == "" and "not an image" in bad_row["error"]
    for photo in photos:
        expected = tiny_model.recommend(photo, k=4, blocklist=load_blocklist())
        got = [r for r in rows if r["image"] == str(photo)]
        assert [r["rank"] for r in got] == ["1", "2", "3", "4"]
        assert [r["hashtag"] for r in got] == expected.tags
        assert [float(r["score"]) for r in got] == pytest.approx(
            [t.score for t in expected.hashtags], abs=1e-5
        )
        assert [int(r["posts"]) for r in got] == [t.posts for t in expected.hashtags]
        assert [r["tier"] for r in got] == [t.tier for t in expected.hashtags]


def test_recommend_many_images_shows_progress_on_stderr(tiny_build, tmp_path, capsys):
    from recommender import cli
    from recommender.query.recommender import EMBED_BATCH

    photos = [tiny_photo(tmp_path / f"{t}.jpg", t) for t in ("red", "green", "blue")]
    images = [str(photos[i % len(photos)]) for i in range(EMBED_BATCH + 3)]
    assert cli.main(["recommend", *images, "--model", str(tiny_build[0]), "--json"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == len(images)
    assert f"{len(images)}/{len(images)}" in captured.err  # the bar reached the end
    cli.main(["recommend", images[0], "--model", str(tiny_build[0]), "--json"])
    assert capsys.readouterr().err == ""  # one batch: no bar
