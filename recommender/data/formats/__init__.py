"""The registry of data set layouts: one module per layout in this package.

Each module defines ``FORMAT = DatasetFormat(...)``: its name, how to recognise it
(``detect``), how to read it (``load``), how to write a collection of posts in it
(``write_sample``, so one contract test runs on every layout) and its line of the README's
table. Modules are found by name, so adding a layout is adding one file here; the
``--format`` choices, the README's table (:func:`recommender.data.datasets.layouts_table`) and
``tests/test_datasets_contract.py`` pick it up.

Auto-detection asks each layout in ``priority`` order (lowest first) and takes the first that
recognises the path: specific layouts (a ``json_files/`` folder, an Instagram export) come
before generic ones (any folder of captioned images).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recommender.data.records import Dataset


@dataclass(frozen=True)
class SamplePost:
    """A post as a contract test writes it: image files (bytes) and raw hashtags.

    ``images`` is empty for a post without image and has several entries for a carousel
    (layouts that keep one image per post keep the first). ``caption`` is the text that
    caption-based layouts write: the hashtags appended to ``text``.
    """

    key: str
    images: tuple[bytes, ...]
    hashtags: tuple[str, ...]
    text: str = ""

    @property
    def caption(self) -> str:
        return " ".join([self.text, *(f"#{tag}" for tag in self.hashtags)]).strip()


COMMENT_HASHTAGS = ("owner", "all", "none")


@dataclass(frozen=True)
class ReadOptions:
    """How to read a data set, where a layout offers a choice (``build`` options).

    Attributes
    ----------
    archived_posts : bool
        Instagram export: also read the posts the account archived (hidden from the
        profile; ``archived_posts.json``). Off by default: the owner chose to hide them.
    comment_hashtags : str
        instaloader download with ``--comments``: whose comments' hashtags a post also gets:
        ``"owner"`` (the post owner's own comments, where many put their hashtags; the
        default), ``"all"`` (everyone's) or ``"none"``.
    """

    archived_posts: bool = False
    comment_hashtags: str = "owner"

    def __post_init__(self) -> None:
        if self.comment_hashtags not in COMMENT_HASHTAGS:
            from recommender.errors import ConfigError

            raise ConfigError(
                f"comment_hashtags must be one of {', '.join(COMMENT_HASHTAGS)}, "
                f"not {self.comment_hashtags!r}"
            )


@dataclass(frozen=True)
class DatasetFormat:
    """One data set layout.

    Attributes
    ----------
    name : str
        The ``--format`` value.
    title : str
        What people call it (the README's first column).
    summary : str
        One line for error messages.
    description : str
        Markdown for the README's table: what the layout looks like.
    detect : callable(Path) -> bool
        Whether a path is a data set of this layout; cheap, never raises for a readable path.
    load : callable(Path) -> Dataset
        Read it; raises :class:`~recommender.errors.DatasetError` when it cannot.
    write_sample : callable(Path, Sequence[SamplePost]) -> Path
        Write posts in this layout under an empty folder; returns the path to load.
    priority : int
        Detection order (lowest asked first).
    options : tuple of str
        The :class:`ReadOptions` fields the layout reads; then ``load`` takes them as a
        second argument.
    load_parts : callable(Sequence[Path], ReadOptions) -> Dataset, optional
        Read several paths as one data set (a split export); None if the layout cannot.
    """

    name: str
    title: str
    summary: str
    description: str
    detect: Callable[[Path], bool]
    load: Callable[..., Dataset]  # (path), or (path, options) when the layout has options
    write_sample: Callable[[Path, Sequence[SamplePost]], Path]
    priority: int = 50
    options: tuple[str, ...] = ()
    load_parts: Callable[[Sequence[Path], ReadOptions], Dataset] | None = None

    def read(self, path: Path, options: ReadOptions | None = None) -> Dataset:
        """``load``, with the options the layout reads."""
        return self.load(path, options or ReadOptions()) if self.options else self.load(path)


def one_manifest(
    folder: Path, names: Sequence[str], kind: str = "manifests", present=Path.is_file
) -> Path | None:
    """The one of ``names`` present in ``folder`` (``present(path)``), None if none; several
    is a :class:`~recommender.errors.DatasetError` asking for the one to use."""
    from recommender.errors import DatasetError

    found = [folder / name for name in names if present(folder / name)]
    if len(found) > 1:
        raise DatasetError(
            f"{folder} holds several {kind} ({', '.join(p.name for p in found)}); "
            "pass the path of the one to use"
        )
    return found[0] if found else None


_REGISTRY: dict[str, DatasetFormat] | None = None


def registry() -> dict[str, DatasetFormat]:
    """Every layout by name, in detection order (modules imported on first call)."""
    global _REGISTRY
    if _REGISTRY is None:
        found = []
        for info in pkgutil.iter_modules(__path__):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{__name__}.{info.name}")
            fmt = getattr(module, "FORMAT", None)
            if isinstance(fmt, DatasetFormat):
                found.append(fmt)
        found.sort(key=lambda f: (f.priority, f.name))
        _REGISTRY = {f.name: f for f in found}
    return _REGISTRY
