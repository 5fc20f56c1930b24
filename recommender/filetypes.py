"""What a media file is, from its first bytes (never from its name).

Instagram exports name files after a guess (``.heic`` files that hold JPEG bytes, videos
without an extension) and instaloader after the server's Content-Type, so every reader asks
:func:`sniff` instead of trusting a suffix. Shared by the data readers (photo or video?) and
the image decoder (which format could not be read?).
"""

from __future__ import annotations

import zipfile
import zlib

HEAD_BYTES = 64
"""How many leading bytes :func:`sniff` looks at."""

PHOTOS = frozenset({"JPEG", "PNG", "WebP", "GIF", "BMP", "TIFF", "HEIC", "HEIF", "AVIF"})
VIDEOS = frozenset({"MP4", "QuickTime", "3GP", "WebM", "AVI"})

_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"mif2"}
_AVIF_BRANDS = {b"avif", b"avis"}


def sniff(head: bytes) -> str | None:
    """The format of a file from its first bytes (:data:`HEAD_BYTES` are enough).

    Returns
    -------
    str or None
        A name from :data:`PHOTOS` or :data:`VIDEOS` (``"JPEG"``, ``"HEIC"``, ``"MP4"``...),
        None when the bytes are none of those.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM" and len(head) >= 14:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "WebM"
    if head[4:8] == b"ftyp":
        return _iso_media(head)
    return None


def _iso_media(head: bytes) -> str:
    """An ISO base media file (``ftyp`` box): HEIC/HEIF/AVIF photo or an MP4-family video."""
    size = int.from_bytes(head[:4], "big")
    major = head[8:12]
    compatible = {head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4)}
    brands = {major} | compatible
    if major in _AVIF_BRANDS or (major in _HEIF_BRANDS and compatible & _AVIF_BRANDS):
        return "AVIF"
    if major in _HEIC_BRANDS or (major in _HEIF_BRANDS and compatible & _HEIC_BRANDS):
        return "HEIC"
    if major in _HEIF_BRANDS:
        return "HEIF"
    if major == b"qt  ":
        return "QuickTime"
    if major.startswith((b"3gp", b"3g2")):
        return "3GP"
    if brands & (_HEIC_BRANDS | _HEIF_BRANDS):
        return "HEIF"
    return "MP4"


def sniff_file(path) -> str | None:
    """:func:`sniff` on the start of a file (a path or a :class:`zipfile.Path`); None when it
    cannot be read."""
    from recommender.archives import MemberReader

    try:
        if isinstance(path, zipfile.Path):  # bounded: zipfile would inflate a bzip2 block
            with MemberReader(path.root, path.at) as handle:
                return sniff(handle.read(HEAD_BYTES))
        with path.open("rb") if hasattr(path, "open") else open(path, "rb") as handle:
            return sniff(handle.read(HEAD_BYTES))
    except (
        OSError,
        ValueError,
        RuntimeError,
        KeyError,
        NotImplementedError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
    ):
        return None
