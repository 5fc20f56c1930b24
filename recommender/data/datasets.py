"""Loading training data sets of (image, hashtags) posts.

A data set is a folder, a manifest file or an archive in one of the layouts registered in
:mod:`recommender.data.formats` (one module per layout; ``format_names()`` lists them and
``layouts_table()`` describes them). What every layout shares -- the
:class:`Post` and :class:`Dataset` they produce, the :class:`DatasetBuilder` that vets each
record, the :class:`DatasetReport` -- lives in :mod:`recommender.data.records` (which imports no
layout) and is re-exported here; this module adds :func:`load_dataset` over the registry.

Loading never decodes an image: it only checks that each referenced file is a regular file
inside the data set root (or a member of the archive).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from recommender.data.formats import ReadOptions
from recommender.data.records import (
    COUNT_KEYS,
    IMAGE_SUFFIXES,
    MAX_PROBLEMS,
    Dataset,
    DatasetBuilder,
    DatasetReport,
    ImageRef,
    Post,
    is_uri,
    record_id,
    split_tags,
    unsafe_member,
)
from recommender.errors import DatasetError

# Re-exported: `from recommender.data.datasets import Post` is the public way to name them.
__all__ = [
    "COUNT_KEYS",
    "IMAGE_SUFFIXES",
    "MAX_PROBLEMS",
    "Dataset",
    "DatasetBuilder",
    "DatasetReport",
    "ImageRef",
    "Post",
    "is_uri",
    "record_id",
    "split_tags",
    "unsafe_member",
    "format_names",
    "layouts_help",
    "layouts_table",
    "load_dataset",
    "ReadOptions",
]


OPTION_HELP = {
    "archived_posts": "`--archived-posts`: also the posts the account archived "
    "(`archived_posts.json`; off by default, the owner hid them)",
    "comment_hashtags": "`--comment-hashtags` `owner`, `all` or `none`: the hashtags of the post "
    "owner's own comments (`<stem>_comments.json`, default `owner`), of everyone's, or none",
}
"""What each :class:`ReadOptions` field is, as the README's table and ``--help`` say it."""


def format_names() -> tuple[str, ...]:
    """The names of the registered layouts, in detection order."""
    from recommender.data.formats import registry

    return tuple(registry())


def layouts_help() -> str:
    """One paragraph naming every layout, for error messages."""
    from recommender.data.formats import registry

    parts = [f"({i}) {f.name}: {f.summary}" for i, f in enumerate(registry().values(), 1)]
    return "Supported layouts: " + "; ".join(parts) + "."


def layouts_table() -> str:
    """The README's table of layouts, in Markdown, generated from the registry."""
    from recommender.data.formats import registry

    lines = [
        "| layout | `--format` | what it looks like | `build` options |",
        "|---|---|---|---|",
    ]
    for f in registry().values():
        options = "; ".join(OPTION_HELP[name] for name in f.options) or "—"
        lines.append(f"| {f.title} | `{f.name}` | {f.description} | {options} |")
    return "\n".join(lines)


def __getattr__(name: str):
    # FORMATS and LAYOUTS_HELP come from the registry, asked only when needed.
    if name == "FORMATS":
        return ("auto", *format_names())
    if name == "LAYOUTS_HELP":
        return layouts_help()
    raise AttributeError(f"module 'recommender.data.datasets' has no attribute {name!r}")


def load_dataset(
    path: str | Path | Sequence[str | Path],
    format: str = "auto",
    options: ReadOptions | None = None,
) -> Dataset:
    """Load a data set of posts (images with hashtags).

    Parameters
    ----------
    path : str or Path, or several
        The data set: a folder, a manifest file or an archive (see ``layouts_table()``);
        several paths are the parts of one data set (a split Instagram export).
    format : str
        ``"auto"`` (detect the layout: each registered format is asked in turn, see
        :func:`format_names`) or the name of one layout.
    options : ReadOptions, optional
        Choices some layouts offer (archived posts, comment hashtags); the defaults if None.

    Returns
    -------
    Dataset
        The posts and a report of what was skipped. Image paths are checked to be regular
        files inside the root (after following symlinks) or members of the archive, but not
        decoded.

    Raises
    ------
    DatasetError
        If the path does not exist or cannot be read, the layout is unknown, a manifest's
        header is wrong, or no usable post remains.
    """
    from recommender.data.formats import registry

    formats = registry()
    if format != "auto" and format not in formats:
        raise DatasetError(f"unknown data set format {format!r}; use one of {('auto', *formats)}")
    if isinstance(path, (list, tuple)):
        paths = [Path(p) for p in path]
    else:
        paths = [Path(cast("str | Path", path))]
    if not paths:
        raise DatasetError(f"no data set given. {layouts_help()}")
    if len(paths) > 1:
        return _load_parts(paths, format, options or ReadOptions())
    given = paths[0]
    try:
        if not given.exists():
            raise DatasetError(f"data set {given} does not exist. {layouts_help()}")
        if format == "auto":
            found = next((f for f in formats.values() if f.detect(given)), None)
            if found is None:
                kind = "a file" if given.is_file() else "a folder"
                raise DatasetError(
                    f"{given} is {kind} but not a data set of a known layout. {layouts_help()}"
                )
        else:
            found = formats[format]
        return found.read(given, options)
    except (OSError, RuntimeError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"cannot read data set {given}: {exc}") from exc


def _load_parts(paths: list[Path], format: str, options: ReadOptions) -> Dataset:
    """Several paths as one data set: the parts of a layout that splits (Instagram's export)."""
    from recommender.data.formats import registry

    for given in paths:
        if not given.exists():
            raise DatasetError(f"data set part {given} does not exist")
    splitting = [
        f.load_parts
        for f in registry().values()
        if f.load_parts is not None and format in ("auto", f.name)
    ]
    if not splitting:
        raise DatasetError(
            f"several paths were given, but the {format} layout is one path; pass one"
        )
    try:
        return splitting[0](paths, options)
    except (OSError, RuntimeError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"cannot read data set {paths[0]}: {exc}") from exc
