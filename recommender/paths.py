"""Where things are by default: the demo model and the demo data set.

``HASHTAG_MODEL`` names the model folder the page, the CLI and the API use by default;
``HASHTAG_DATASET`` the data set the demo model is built from. Without them, a checkout of
the repository keeps its model in ``models/demo``; an installed package (``pip install``)
keeps it in the user's data directory, ``$XDG_DATA_HOME/hashtag-recommender/models/demo``
(``~/.local/share/...`` when ``XDG_DATA_HOME`` is unset).
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "hashtag-recommender"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO_ROOT / "models" / "demo"
DEMO_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "instagram-2019"


def in_checkout() -> bool:
    """True when the package runs from a clone of the repository, not an installed copy."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "app.py").is_file()


def user_data_dir() -> Path:
    """``$XDG_DATA_HOME/hashtag-recommender``, else ``~/.local/share/hashtag-recommender``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / APP_NAME


def default_model() -> Path:
    """``$HASHTAG_MODEL``; else ``models/demo`` in a checkout, or the user's data directory's
    ``models/demo`` for an installed package."""
    if os.environ.get("HASHTAG_MODEL"):
        return Path(os.environ["HASHTAG_MODEL"])
    return DEMO_MODEL if in_checkout() else user_data_dir() / "models" / "demo"


def default_dataset() -> Path:
    """``$HASHTAG_DATASET``, else ``../shared/datasets/instagram-2019`` beside the repository."""
    return Path(os.environ.get("HASHTAG_DATASET") or DEMO_DATASET)
