"""The package as pip installs it: declared dependencies, the console script, package data,
and default paths that make sense outside a checkout."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

from recommender import paths

REPO = Path(__file__).resolve().parent.parent


def _requirement_lines(path: Path) -> list[str]:
    lines = []
    for line in path.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            lines.append(line)
    return lines


def _normalised(requirement: str) -> str:
    from packaging.requirements import Requirement

    return str(Requirement(requirement))


def test_declared_dependencies_are_requirements_txt():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"]
    pinned = _requirement_lines(REPO / "requirements.txt")
    assert sorted(map(_normalised, declared)) == sorted(map(_normalised, pinned))
    assert not any(d.lower().startswith("pyspark") for d in declared)
    extras = project["optional-dependencies"]
    for extra, path in (("spark", "requirements-spark.txt"), ("dev", "requirements-dev.txt")):
        pinned = _requirement_lines(REPO / path)
        assert sorted(map(_normalised, extras[extra])) == sorted(map(_normalised, pinned))


def test_the_version_is_written_once():
    """pyproject reads it from the package; the pre-commit hook pins the ruff of the dev list."""
    import recommender

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    attr = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "recommender.__version__" and recommender.__version__.count(".") == 2
    ruff = [r for r in _requirement_lines(REPO / "requirements-dev.txt") if r.startswith("ruff")]
    hooks = (REPO / ".pre-commit-config.yaml").read_text()
    assert ruff == [f"ruff=={ruff[0].split('==')[1]}"]
    assert f"rev: v{ruff[0].split('==')[1]}" in hooks


def test_default_model_folder_in_a_checkout_outside_it_and_from_the_environment(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("HASHTAG_MODEL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.in_checkout()
    assert paths.default_model() == REPO / "models" / "demo"
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "site-packages")  # an installed copy
    assert not paths.in_checkout()
    assert paths.default_model() == tmp_path / "xdg" / "hashtag-recommender" / "models" / "demo"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.default_model() == (
        tmp_path / "home" / ".local" / "share" / "hashtag-recommender" / "models" / "demo"
    )
    monkeypatch.setenv("HASHTAG_MODEL", str(tmp_path / "mine"))
    assert paths.default_model() == tmp_path / "mine"


def test_the_block_list_is_package_data():
    from recommender.data.hashtags import BLOCKLIST_PATH, load_blocklist

    assert Path(str(BLOCKLIST_PATH)).parent == REPO / "recommender" / "assets"
    assert {"like4like", "followforfollow"} <= load_blocklist()


def _tiny_model(path: Path) -> None:
    from recommender.config import ALSParams
    from recommender.data.datasets import Post
    from recommender.fit.training import fit_recommender
    from recommender.query.recommender import BuildConfig

    posts = [Post(str(i), f"{i}.jpg", ("cat", "pets") if i % 2 else ("food",), None)
             for i in range(6)]  # fmt: skip
    feats = np.eye(6, 8, dtype=np.float32)
    config = BuildConfig(als=ALSParams(factors=2, iterations=2))
    fit_recommender(posts, feats, list(range(6)), config).save(path)


@pytest.mark.slow
def test_a_built_wheel_installs_a_working_library_and_console_script(tmp_path):
    """Build the wheel, install it (no dependencies) into a fresh venv that sees this
    environment's dependencies, and use it from outside the checkout."""
    pip = [sys.executable, "-m", "pip"]
    source = tmp_path / "source"  # a copy: setuptools writes build/ and egg-info beside it
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "recommender", source / "recommender",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    wheels = tmp_path / "wheels"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("hashtag_recommender-*.whl")
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
        timeout=120,
    )
    python = venv / "bin" / "python"
    # The dependencies come from this environment (no download): after the venv's own
    # site-packages, so the installed recommender wins over anything else.
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "outer-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HASHTAG_MODEL")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    work = tmp_path / "elsewhere"  # not the checkout: nothing imports from the repository
    work.mkdir()

    def run(*args):
        return subprocess.run(
            [*map(str, args)], cwd=work, env=env, capture_output=True, text=True, timeout=300
        )

    script = venv / "bin" / "hashtag-recommender"
    proc = run(script, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: hashtag-recommender")
    for command in ("build", "recommend", "evaluate", "info"):
        assert command in proc.stdout

    code = (
        "import recommender.data.hashtags as h, recommender.paths as p; "
        "print(h.__file__); print(len(h.load_blocklist())); print(p.default_model())"
    )
    probe = run(python, "-c", code)
    assert probe.returncode == 0, probe.stderr
    module, blocked, model = probe.stdout.splitlines()
    assert Path(module).is_relative_to(venv) and int(blocked) > 50
    assert Path(model) == tmp_path / "xdg" / "hashtag-recommender" / "models" / "demo"

    proc = run(script, "info")  # the default model folder: not built yet, said in one line
    assert proc.returncode == 1 and "No model folder at " + str(tmp_path / "xdg") in proc.stderr
    _tiny_model(tmp_path / "model")
    proc = run(script, "info", tmp_path / "model")
    assert proc.returncode == 0, proc.stderr
    assert "posts=6, images=6, hashtags=3" in proc.stdout
    shutil.rmtree(venv)
