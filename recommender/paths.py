"""Where things are by default: the demo model and the demo data set.

``HASHTAG_MODEL`` names the model folder the page, the CLI and the API use by default;
``HASHTAG_DATASET`` the data set the demo model is built from.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO_ROOT / "models" / "demo"
DEMO_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "instagram-2019"


def default_model() -> Path:
    """``$HASHTAG_MODEL``, else ``models/demo`` in the repository."""
    return Path(os.environ.get("HASHTAG_MODEL") or DEMO_MODEL)


def default_dataset() -> Path:
    """``$HASHTAG_DATASET``, else ``../shared/datasets/instagram-2019`` beside the repository."""
    return Path(os.environ.get("HASHTAG_DATASET") or DEMO_DATASET)
