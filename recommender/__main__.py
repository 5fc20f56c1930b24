"""``python -m recommender``: see :mod:`recommender.cli`."""

import os
import sys

# TensorFlow's start-up chatter hides the output users came for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from recommender.cli import main  # noqa: E402

sys.exit(main())
