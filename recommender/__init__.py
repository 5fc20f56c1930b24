"""Recommend Instagram hashtags for a photo from the hashtags of similar training posts.

The public API::

    from recommender import HashtagRecommender
    rec = HashtagRecommender.load("models/demo")
    result = rec.recommend("photo.jpg", n_neighbours=15, k=10)

Heavy libraries (TensorFlow, implicit) load only when a function needs them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from recommender.errors import (  # noqa: E402
    BackboneError,
    ConfigError,
    DatasetError,
    FitError,
    ImageError,
    ModelError,
    RecommenderError,
)

__all__ = [
    "BackboneError",
    "ConfigError",
    "DatasetError",
    "FitError",
    "HashtagRecommender",
    "ImageError",
    "ModelError",
    "RecommenderError",
    "Recommendation",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Lazy so that `import recommender` and `python -m recommender --help` stay fast.
    if name in ("HashtagRecommender", "Recommendation", "BuildConfig"):
        from recommender.query import recommender as _r

        return getattr(_r, name)
    raise AttributeError(f"module 'recommender' has no attribute {name!r}")
