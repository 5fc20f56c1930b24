"""A model folder that checks itself (issue 26 §3): the manifest's own checksum and keys,
the weights it may name, a swap killed half-way, and many saves to one folder at once."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import rewrite_manifest
from test_model_files import tiny_model

from recommender import HashtagRecommender, ModelError, cli
from recommender.store import model_io
from recommender.store.model_io import MANIFEST, MANIFEST_DIGEST, read_manifest, read_model

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rec():
    return tiny_model()


@pytest.fixture
def saved(rec, tmp_path):
    path = tmp_path / "model"
    rec.save(path)
    return path


def test_every_single_byte_change_of_the_manifest_is_refused(saved):
    raw = (saved / MANIFEST).read_bytes()
    loaded = 0
    for i in range(len(raw)):
        for flip in (0x01, 0x20):
            (saved / MANIFEST).write_bytes(raw[:i] + bytes([raw[i] ^ flip]) + raw[i + 1 :])
            try:
                read_manifest(saved)
                loaded += 1
            except ModelError:
                pass
    assert loaded == 0  # before the checksum: 2.3% of flips loaded and changed the answers
    (saved / MANIFEST).write_bytes(raw)
    assert read_manifest(saved)["format"] == model_io.FORMAT_NAME


def test_the_digest_file_is_sha256sum_format_and_checked(saved):
    line = (saved / MANIFEST_DIGEST).read_text()
    assert line == f"{hashlib.sha256((saved / MANIFEST).read_bytes()).hexdigest()}  {MANIFEST}\n"
    check = subprocess.run(["sha256sum", "-c", MANIFEST_DIGEST], cwd=saved, capture_output=True)
    assert check.returncode == 0
    (saved / MANIFEST_DIGEST).write_text("0" * 64 + f"  {MANIFEST}\n")
    with pytest.raises(ModelError, match="checksum"):
        HashtagRecommender.load(saved)
    (saved / MANIFEST_DIGEST).unlink()
    with pytest.raises(ModelError, match=f"missing {MANIFEST_DIGEST}"):
        HashtagRecommender.load(saved)


@pytest.mark.parametrize("key", ["categories", "single_tag_categories", "hedge_calibration"])
def test_a_renamed_hedging_key_is_refused_not_read_as_a_default(saved, key):
    manifest = json.loads((saved / MANIFEST).read_text())
    manifest[key + "_"] = manifest.pop(key, None)  # a rename, its checksum made to match
    rewrite_manifest(saved, manifest)
    with pytest.raises(ModelError, match="unknown key") as err:
        HashtagRecommender.load(saved)
    assert "\n" not in str(err.value) and "Rebuild it" in str(err.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("neighbours"), "no 'neighbours'"),
        (lambda m: m.pop("counts"), "no 'counts'"),
        (lambda m: m["config"].pop("method"), "config has no 'method'"),
        (lambda m: m["config"].update(metod="blend"), "unknown key 'metod'"),
        (lambda m: m.update(categories="food"), "'categories' is a str"),
        (lambda m: m["config"].update(thumb_size=True), "'thumb_size' is True"),
    ],
)
def test_a_missing_or_mistyped_key_is_a_model_error(saved, edit, message):
    manifest = json.loads((saved / MANIFEST).read_text())
    edit(manifest)
    rewrite_manifest(saved, manifest)
    with pytest.raises(ModelError, match=message):
        HashtagRecommender.load(saved)


def as_version_2(path: Path) -> dict:
    """The folder as a model built before the manifest had its own checksum."""
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["format_version"] = 2
    (path / MANIFEST_DIGEST).unlink()
    rewrite_manifest(path, manifest)
    assert not (path / MANIFEST_DIGEST).exists()
    return manifest


def test_a_model_built_before_the_digest_still_loads_and_is_still_checked(rec, saved):
    manifest = as_version_2(saved)
    loaded = HashtagRecommender.load(saved)
    assert loaded.manifest["format_version"] == 2
    query = np.array([1.0, 0.02, 0.0, 0.0], dtype=np.float32)
    assert loaded.recommend_features(query, 4, 3) == rec.recommend_features(query, 4, 3)
    manifest["hedge_calibratoin"] = manifest.pop("hedge_calibration", None)
    rewrite_manifest(saved, manifest)
    with pytest.raises(ModelError, match="unknown key 'hedge_calibratoin'"):
        HashtagRecommender.load(saved)


def test_a_version_3_manifest_flipped_to_2_still_needs_its_digest(saved):
    raw = (saved / MANIFEST).read_bytes()
    (saved / MANIFEST).write_bytes(raw.replace(b'"format_version": 3', b'"format_version": 2'))
    with pytest.raises(ModelError, match="checksum"):
        read_manifest(saved)


def _name_weights(path: Path, weights: str) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["config"]["weights"] = weights
    rewrite_manifest(path, manifest)


def test_weights_outside_the_folder_are_refused_unless_the_user_lists_them(
    saved, tmp_path, monkeypatch
):
    elsewhere = tmp_path / "downloads" / "big.pth"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"x" * 10)
    monkeypatch.delenv(model_io.WEIGHTS_DIRS_ENV, raising=False)
    for named in (str(elsewhere), "../downloads/big.pth", "/dev/zero"):
        _name_weights(saved, named)
        with pytest.raises(ModelError, match=model_io.WEIGHTS_DIRS_ENV) as err:
            HashtagRecommender.load(saved)
        assert "\n" not in str(err.value)
    _name_weights(saved, str(elsewhere))
    monkeypatch.setenv(model_io.WEIGHTS_DIRS_ENV, str(elsewhere.parent))
    assert HashtagRecommender.load(saved).manifest["config"]["weights"] == str(elsewhere)


def test_weights_in_the_folder_or_an_installed_package_are_read(saved, monkeypatch):
    monkeypatch.delenv(model_io.WEIGHTS_DIRS_ENV, raising=False)
    (saved / "own.pth").write_bytes(b"x")
    for named in ("own.pth", str(saved / "own.pth"), "default", None):
        _name_weights(saved, named)
        assert model_io.weights_problem(read_manifest(saved), saved) is None
    package = Path(pytest.__file__).resolve()  # a file of an installed package
    _name_weights(saved, str(package))
    assert model_io.weights_problem(read_manifest(saved), saved) is None


# A build killed between the two renames of its swap: the old model is set aside in
# .model.old-PID-*/model, nothing is at --out. This process dies right there.
KILLED_IN_THE_SWAP = """
import os, sys
real = os.rename
def rename(src, dst):
    real(src, dst)
    if ".old-" in str(dst):
        os._exit(9)
os.rename = rename
from recommender import HashtagRecommender
HashtagRecommender.load(sys.argv[1]).save(sys.argv[1])
"""


def kill_in_the_swap(path: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-c", KILLED_IN_THE_SWAP, str(path)], cwd=REPO, capture_output=True
    )
    assert done.returncode == 9, done.stderr.decode()[-2000:]
    assert not path.exists()
    (aside,) = path.parent.glob(f".{path.name}.old-*")
    return aside


def test_a_build_after_a_swap_killed_half_way_puts_the_old_model_back(rec, saved, monkeypatch):
    before = (saved / MANIFEST).read_bytes()
    aside = kill_in_the_swap(saved)

    def failing():  # the next build fails too: the old model must still be there after it
        yield b"x"
        raise RuntimeError("the build failed half-way")

    with pytest.raises(RuntimeError):
        model_io.write_model(saved, {}, {"features": np.zeros((1, 4), np.float32)}, {}, failing())
    assert (saved / MANIFEST).read_bytes() == before
    assert not aside.exists()
    assert HashtagRecommender.load(saved).manifest["counts"] == rec.manifest["counts"]


def test_loading_after_a_swap_killed_half_way_puts_the_old_model_back(rec, saved):
    before = (saved / MANIFEST).read_bytes()
    kill_in_the_swap(saved)
    assert model_io.model_version(saved)  # what the page asks first
    assert (saved / MANIFEST).read_bytes() == before
    assert not list(saved.parent.glob(".model.old-*"))  # the next build removes the tmp
    assert read_model(saved)[0]["counts"] == rec.manifest["counts"]


def test_many_saves_to_one_folder_at_once_all_succeed(rec, tmp_path):
    path = tmp_path / "model"
    rec.save(path)
    threads, saves = 12, 8
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def worker():
        start.wait()
        for _ in range(saves):
            try:
                rec.save(path)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert failures == []
    assert HashtagRecommender.load(path).manifest["counts"] == rec.manifest["counts"]
    assert not list(tmp_path.glob(".model.*"))


SAVER = """
import sys, time
from recommender import HashtagRecommender
rec = HashtagRecommender.load(sys.argv[1])
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
for _ in range(int(sys.argv[3])):
    rec.save(sys.argv[1])
"""


def test_many_processes_saving_to_one_folder_all_succeed(rec, tmp_path):
    path = tmp_path / "model"
    rec.save(path)
    import time

    at = str(time.time() + 4.0)  # all start together, after their imports
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SAVER, str(path), at, "15"],
            cwd=REPO,
            stderr=subprocess.PIPE,
        )
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, "\n".join(errors)[-3000:]
    assert HashtagRecommender.load(path).manifest["counts"] == rec.manifest["counts"]


@pytest.mark.parametrize("out", ["/", "/etc", "/usr", "/tmp", str(Path.home())])
def test_system_folders_are_refused_before_any_work(out, tmp_path, capsys):
    assert model_io.output_problem(out) is not None
    data = tmp_path / "no-data-set-here"  # reading it first would fail with another message
    try:
        code = cli.main(["build", str(data), "--out", out, "--quiet"])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code != 0 and "refusing to write there" in err and err.count("\n") == 1, err
    assert os.path.isdir(out)
