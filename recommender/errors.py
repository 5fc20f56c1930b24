"""The errors the library raises at its public boundary.

Every message says what is wrong and what to do about it. Callers (the CLI, the page)
catch :class:`RecommenderError` and show its message; anything else is a bug.
"""

from __future__ import annotations

import os


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


class DiskFullError(RecommenderError):
    """The disk filled while writing; what was there before is intact, the partial files
    are removed."""


def disk_full(
    exc: BaseException, folder: str | os.PathLike[str], needed: int, hint: str
) -> DiskFullError | None:
    """A :class:`DiskFullError` naming ``folder`` and the space needed when ``exc`` says the
    disk (or the user's quota) is full, else None. ``hint`` says what to do."""
    import errno
    import shutil

    if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None

    def size(count: int) -> str:
        return f"{count / 1e6:,.1f} MB" if count >= 100_000 else f"{count / 1e3:,.1f} kB"

    try:
        free = f", {size(shutil.disk_usage(folder).free)} free"
    except OSError:
        free = ""
    return DiskFullError(
        f"no space left on the disk of {folder}: writing needs at least {size(needed)}"
        f"{free}; what was there before is intact. {hint}"
    )
