"""The command line end to end, as a user runs it (``python -m recommender ...``)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict | None = None, timeout: int = 600):
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "recommender", *map(str, args)],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def small_dataset(dataset_path, tmp_path_factory) -> Path:
    """A manifest data set of 16 real photos (8 food, 8 animals) copied into a temp folder."""
    root = tmp_path_factory.mktemp("small")
    (root / "photos").mkdir()
    rows = []
    for category in ("food", "animals"):
        records = json.loads((dataset_path / "json_files" / f"{category}.json").read_text())
        picked = [
            r
            for r in records
            if len(r["hashtags"]) > 3
            and (dataset_path / "data" / category / r["image_local_name"]).is_file()
        ][:8]
        for r in picked:
            src = dataset_path / "data" / category / r["image_local_name"]
            shutil.copy(src, root / "photos" / src.name)
            rows.append({"image": f"photos/{src.name}", "hashtags": " ".join(r["hashtags"])})
    rows.append({"image": "", "hashtags": "#food #pasta #homemade"})  # a post without image
    rows.append({"image": "../outside.jpg", "hashtags": "#sneaky"})  # refused, counted
    with open(root / "posts.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["image", "hashtags"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def small_model(small_dataset, tmp_path_factory, feature_cache_dir) -> Path:
    out = tmp_path_factory.mktemp("cli") / "model"
    proc = run_cli(
        "build",
        small_dataset,
        "--out",
        out,
        "--factors",
        "8",
        "--quiet",
        env={"HASHTAG_CACHE": str(feature_cache_dir)},
    )
    assert proc.returncode == 0, proc.stderr
    assert f"Model written to {out}" in proc.stdout
    assert "posts: 17  images indexed: 16" in proc.stdout
    assert "outside" in proc.stdout  # the refused record is reported
    return out


def test_help_lists_the_subcommands_and_defaults():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for word in ("build", "recommend", "info"):
        assert word in proc.stdout
    proc = run_cli("build", "--help")
    assert "--factors" in proc.stdout and "(default: " in proc.stdout


def test_build_info_recommend_on_a_small_manifest(small_model, dataset_path):
    info = run_cli("info", small_model)
    assert info.returncode == 0, info.stderr
    assert "efficientnet_lite0" in info.stdout and "manifest" in info.stdout
    info_json = json.loads(run_cli("info", small_model, "--json").stdout)
    assert info_json["counts"]["images"] == 16
    assert info_json["config"]["als"]["factors"] == 8

    food = dataset_path / "test" / "food.jpg"
    human = run_cli("recommend", food, "--model", small_model, "-n", "3", "-k", "5")
    assert human.returncode == 0, human.stderr
    assert "#food" in human.stdout
    assert human.stdout.count("photos/") == 3  # three neighbours listed


def test_recommend_json_schema_on_the_demo_model(demo_build, dataset_path):
    path, _ = demo_build
    photos = sorted((dataset_path / "test").glob("*.jpg"))
    proc = run_cli("recommend", *photos, "--model", path, "-n", "4", "-k", "6", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(p) for p in photos]
    for line in lines:
        assert len(line["hashtags"]) == 6 and len(line["neighbors"]) == 4
        for tag in line["hashtags"]:
            assert {"tag", "score"} <= set(tag) and not tag["tag"].startswith("#")
        scores = [t["score"] for t in line["hashtags"]]
        assert scores == sorted(scores, reverse=True)
        for nb in line["neighbors"]:
            assert (dataset_path / nb["image"]).is_file()
            assert -1 <= nb["similarity"] <= 1 and isinstance(nb["hashtags"], list)
    by_name = {Path(line["image"]).stem: line for line in lines}
    assert "food" in [t["tag"] for t in by_name["food"]["hashtags"]]


def test_a_bad_image_is_one_line_and_a_nonzero_exit_but_the_rest_is_answered(
    small_model, dataset_path, tmp_path
):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo")
    good = dataset_path / "test" / "animals.jpg"
    proc = run_cli("recommend", bad, good, "--model", small_model, "--json")
    assert proc.returncode == 1
    first, second = (json.loads(line) for line in proc.stdout.splitlines())
    assert "not an image" in first["error"]
    assert second["hashtags"]
    human = run_cli("recommend", bad, "--model", small_model)
    assert human.returncode == 1
    assert human.stderr.strip().count("\n") == 0 and "Traceback" not in human.stderr


def test_missing_or_damaged_model_says_how_to_rebuild(small_model, tmp_path, dataset_path):
    proc = run_cli("recommend", dataset_path / "test" / "food.jpg", "--model", tmp_path / "none")
    assert proc.returncode == 1
    assert "python -m recommender build" in proc.stderr and "Traceback" not in proc.stderr
    broken = tmp_path / "broken"
    shutil.copytree(small_model, broken)
    (broken / "arrays.npz").write_bytes(b"garbage")
    proc = run_cli("info", broken)
    assert proc.returncode == 1 and "damaged" in proc.stderr


def test_a_data_set_with_nothing_usable_is_a_clear_error(tmp_path):
    (tmp_path / "posts.jsonl").write_text('{"image": "", "hashtags": []}\nnot json\n')
    proc = run_cli("build", tmp_path / "posts.jsonl", "--out", tmp_path / "m", "--quiet")
    assert proc.returncode == 1
    assert "no usable posts" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m").exists()


def test_bad_options_are_refused(small_model, dataset_path):
    food = dataset_path / "test" / "food.jpg"
    assert run_cli("recommend", food, "--model", small_model, "-n", "0").returncode == 2
    assert run_cli("recommend", food, "--model", small_model, "--bogus").returncode == 2
    proc = run_cli("build", "x", "--factors", "0")
    assert proc.returncode == 1 and "factors" in proc.stderr


def test_skip_existing_leaves_a_loadable_model_alone(small_model, small_dataset):
    before = (small_model / "manifest.json").read_bytes()
    proc = run_cli("build", small_dataset, "--out", small_model, "--skip-existing")
    assert proc.returncode == 0 and "not rebuilding" in proc.stdout
    assert (small_model / "manifest.json").read_bytes() == before
