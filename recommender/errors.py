"""The errors the library raises at its public boundary.

Every message says what is wrong and what to do about it. Callers (the CLI, the page)
catch :class:`RecommenderError` and show its message; anything else is a bug.
"""

from __future__ import annotations


class RecommenderError(Exception):
    """Base class of every error the library raises on purpose."""


class ImageError(RecommenderError, ValueError):
    """An image could not be used: not an image, corrupt, truncated, or too large."""


class DatasetError(RecommenderError, ValueError):
    """A data set cannot be read, or holds nothing usable."""


class ModelError(RecommenderError):
    """A model folder is missing, damaged, or of a format this version cannot read."""


class BackboneError(RecommenderError):
    """A feature-extraction backbone or its weights cannot be loaded."""


class ConfigError(RecommenderError, ValueError):
    """A parameter is out of range or unknown (a CLI option, a config field, an argument)."""


class FitError(RecommenderError):
    """Training produced unusable numbers (NaN or infinite factors or weights)."""
