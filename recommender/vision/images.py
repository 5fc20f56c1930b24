"""Read untrusted image files safely and turn them into model input.

Every public function either returns a usable result or raises
:class:`~recommender.errors.ImageError` with one sentence a user can act on. Limits are
checked before any pixel data is decoded:

* files or uploads larger than :data:`MAX_BYTES` are refused before they are read fully;
* images declaring more than :data:`MAX_PIXELS` pixels are refused after the header is
  read and before the pixels are decoded (a 6000x4000 = 24 MP phone photo passes);
* images whose decoding would hold more than :data:`MAX_DECODED_BYTES` (pixels times the
  bytes per pixel of their mode and of the RGB copy made from them: a 40 MP float TIFF
  needs 13 bytes a pixel) are refused before decoding, after any reduced JPEG decode;
* JPEGs of more than :data:`MAX_JPEG_SCANS` scans are refused before decoding (each scan
  of a progressive JPEG is a pass over the whole image: 20,000 of them took 50 s of CPU);
* all decodes in the process at once hold at most :data:`DECODE_BUDGET` bytes: a decode
  that would go over waits its turn (up to :data:`DECODE_WAIT_SECONDS`, then refused).

Only the formats in :data:`SUPPORTED` are opened, whatever the file name says (HEIC/HEIF, the
iPhone's format, through the ``pillow-heif`` plugin, under the same limits); a file of another
known format is named in the error ("AVIF photo: ..."). Pillow's
global settings (``Image.MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``) are
read, never changed. The functions keep no mutable state and may be called from several
threads at once.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import operator
import os
import re
import stat
import threading
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO

import numpy as np
from PIL import ExifTags, Image, ImageOps

from recommender import limits
from recommender.archives import MemberError, MemberForged, MemberTooLarge, read_member
from recommender.errors import ImageError
from recommender.filetypes import HEAD_BYTES, PHOTOS, VIDEOS, sniff

register_heif_opener: Callable[..., None] | None
try:  # HEIC/HEIF: Pillow's plugin, registered once; its size is known before decoding
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - a declared dependency
    register_heif_opener = None

__all__ = [
    "DECODE_BUDGET",
    "MAX_BYTES",
    "MAX_DECODED_BYTES",
    "MAX_JPEG_SCANS",
    "MAX_PIXELS",
    "SUPPORTED",
    "ImageSource",
    "content_hash",
    "decode_thumbnail",
    "load_for_model",
    "open_image",
    "open_reduced",
    "read_bytes",
    "thumbnail_jpeg",
    "to_model_input",
]

MAX_PIXELS = 40_000_000
"""Largest image, in pixels, that is decoded; checked against the header before decoding."""

MAX_BYTES = 50 * 1024 * 1024
"""Largest file or upload, in bytes, that is read."""

MAX_DECODED_BYTES = 4 * MAX_PIXELS + 8_000_000
"""Most memory one decode may hold: the decoded pixels, their RGB copy and the decoder's
rows (a 40 MP RGB photo, stored by Pillow at 4 bytes a pixel, fits; a 40 MP float TIFF or
a 1 x 40,000,000 PNG does not)."""

MAX_JPEG_SCANS = 100
"""Most scans a JPEG may have (a baseline JPEG has 1, a usual progressive one about 10)."""

DECODE_BUDGET = 400_000_000
"""Most bytes all decodes of the process hold at once (see :data:`MAX_DECODED_BYTES`)."""

DECODE_WAIT_SECONDS = 60.0
"""How long a decode waits for the others to leave room in :data:`DECODE_BUDGET`."""

SUPPORTED = "JPEG, PNG, WebP, GIF, BMP, TIFF" + (", HEIC/HEIF" if register_heif_opener else "")
"""The formats accepted, as shown to users."""

ImageSource = (
    str | os.PathLike | zipfile.Path | bytes | bytearray | memoryview | IO[bytes] | Image.Image
)

# Pillow's names for SUPPORTED; JPEG also covers MPO (multi-picture JPEGs from cameras).
_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF") + (
    ("HEIF",) if register_heif_opener else ()
)
# Formats whose name goes in front of an error, so that "HEIC photo: ..." says what failed.
_NAMED = (PHOTOS | VIDEOS) - {"JPEG", "PNG", "WebP", "GIF", "BMP", "TIFF"}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_WITH_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA", "P")
_CHUNK = 1024 * 1024

# warnings.catch_warnings swaps the process-wide filter list; this lock stops our own
# threads from interleaving those swaps. It is held only while a header is parsed.
_OPEN_LOCK = threading.Lock()

_CORRUPT = "The image is truncated or corrupt."
_UNSUPPORTED = f"This file is not an image in a supported format ({SUPPORTED})."
_NO_MEMORY = "There is not enough memory to decode this image."


def read_bytes(
    source: str | os.PathLike | zipfile.Path | bytes | bytearray | memoryview | IO[bytes],
) -> bytes:
    """Return the raw bytes of an image source, refusing empty or oversized input.

    Parameters
    ----------
    source
        A file path (``str`` or ``os.PathLike``), a member of a zip archive
        (:class:`zipfile.Path`, read in place), the bytes themselves (``bytes``,
        ``bytearray``, ``memoryview``), or a binary file object, which is read from its
        current position and left open.

    Returns
    -------
    bytes
        At most :data:`MAX_BYTES` bytes.

    Raises
    ------
    ImageError
        If the path does not exist or cannot be read, the input is empty, or it is larger
        than :data:`MAX_BYTES` (a file's size is checked before it is read).
    TypeError
        If ``source`` is none of the above, or a file object opened in text mode.
    """
    limit = MAX_BYTES
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        if view.nbytes > limit:
            raise ImageError(_too_many_bytes(view.nbytes, limit))
        data = source if isinstance(source, bytes) else view.tobytes()
    elif isinstance(source, (str, os.PathLike)):
        data = _read_path(source, limit)
    elif isinstance(source, zipfile.Path):
        data = _read_member(source, limit)
    elif hasattr(source, "read"):
        try:
            data = _read_capped(source, limit)
        except OSError as exc:
            raise ImageError(f"The file cannot be read: {_reason(exc)}.") from exc
    else:
        raise TypeError(
            f"expected a path, bytes or a binary file object, not {type(source).__name__}"
        )
    if not data:
        raise ImageError("The file is empty (0 bytes).")
    return data


def content_hash(data: bytes) -> str:
    """Return the SHA-256 of ``data`` as 64 lowercase hex digits.

    Parameters
    ----------
    data
        Raw file bytes, as returned by :func:`read_bytes`.

    Returns
    -------
    str
        The hex digest; identical files give identical hashes.
    """
    return hashlib.sha256(data).hexdigest()


def open_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image fully and return it upright in RGB.

    The format is detected from the content, not the file name. EXIF orientation is
    applied, animated images give their first frame, transparency is composited over
    white, and 16-bit or floating-point greyscale is scaled (not clipped) to 8 bits.

    Parameters
    ----------
    source
        A path, the encoded bytes, a binary file object, or a PIL image. A PIL image is
        checked against the same pixel limit and converted into a new image; it is not
        changed, and its current frame is used.
    max_pixels
        Refuse images whose header declares more pixels than this.

    Returns
    -------
    PIL.Image.Image
        A new, fully loaded image in mode ``"RGB"``.

    Raises
    ------
    ImageError
        If the input is missing, empty, too big (in bytes or pixels), not a supported
        image, truncated or corrupt, or cannot be decoded in the memory available.
    """
    data = None if isinstance(source, Image.Image) else read_bytes(source)
    with _mapped_errors(max_pixels):
        if isinstance(source, Image.Image):
            _check_pixels(source.size, max_pixels)
            original, rgb = source, _upright_rgb(source)
        else:
            assert data is not None
            original, rgb = _decode(data, max_pixels)
        # Never hand back the caller's image, nor an open file that keeps `data` alive.
        return rgb.copy() if rgb is original else rgb


def to_model_input(img: Image.Image, size: int) -> np.ndarray:
    """Squash the whole image to ``size`` x ``size`` pixels, as the CNN sees it.

    The aspect ratio is not kept: nothing is cropped. Downsampling is bicubic after a fast
    integer box reduction (``reducing_gap=3``), which is close to a full antialiased
    resize.

    Parameters
    ----------
    img
        Any PIL image; other modes are converted as :func:`open_image` does, but EXIF
        orientation is not applied here.
    size
        Output side in pixels, at least 1.

    Returns
    -------
    numpy.ndarray
        A new C-contiguous ``uint8`` array of shape ``(size, size, 3)``.

    Raises
    ------
    ImageError
        If ``img`` is a lazily opened file whose pixels cannot be decoded.
    ValueError
        If ``size`` is less than 1.
    """
    size = _positive(size, "size")
    with _mapped_errors():
        rgb = _to_rgb(img)
        small = rgb.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.array(small, dtype=np.uint8, order="C")


def load_for_model(source: ImageSource, size: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Open an image and return the model input, decoding big JPEGs at reduced scale.

    Equivalent to ``to_model_input(open_image(source, max_pixels), size)``, except that a
    JPEG is decoded by libjpeg at 1/2, 1/4 or 1/8 scale when it is still at least
    ``2 * size`` pixels on each side (``Image.draft``), which makes a 24 MP photo several
    times faster. EXIF orientation is applied after the reduced decode.

    Parameters
    ----------
    source
        As for :func:`open_image`.
    size
        Output side in pixels, at least 1.
    max_pixels
        Refuse images whose header declares more pixels than this (full size, before
        any reduced decode).

    Returns
    -------
    numpy.ndarray
        A new C-contiguous ``uint8`` array of shape ``(size, size, 3)``.

    Raises
    ------
    ImageError
        As for :func:`open_image`.
    ValueError
        If ``size`` is less than 1.
    """
    return to_model_input(open_reduced(source, size, max_pixels), size)


def open_reduced(source: ImageSource, size: int, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The upright RGB image :func:`load_for_model` turns into the model input: a JPEG
    decoded by libjpeg at 1/2, 1/4 or 1/8 scale while still at least ``2 * size`` pixels on
    each side. ``to_model_input(open_reduced(s, size), size)`` is ``load_for_model(s,
    size)``: one decode gives both the model input and a preview.

    Raises :class:`ImageError` as :func:`open_image` does; ``ValueError`` if ``size`` < 1.
    """
    size = _positive(size, "size")
    if isinstance(source, Image.Image):
        with _mapped_errors(max_pixels):
            _check_pixels(source.size, max_pixels)
            return _upright_rgb(source)
    _, rgb = _decode(read_bytes(source), max_pixels, draft=(2 * size, 2 * size))
    return rgb


def thumbnail_jpeg(img: Image.Image, size: int = 128, quality: int = 80) -> bytes:
    """Return a centre-cropped square thumbnail encoded as JPEG.

    Parameters
    ----------
    img
        Any PIL image, normally the result of :func:`open_image`; it is not changed.
    size
        Side of the square thumbnail in pixels, at least 1.
    quality
        JPEG quality, 1 (smallest) to 95 (best).

    Returns
    -------
    bytes
        A baseline JPEG of ``size`` x ``size`` pixels.

    Raises
    ------
    ImageError
        If ``img`` is a lazily opened file whose pixels cannot be decoded.
    ValueError
        If ``size`` or ``quality`` is out of range.
    """
    size = _positive(size, "size")
    if not 1 <= operator.index(quality) <= 95:
        raise ValueError(f"quality must be between 1 and 95, not {quality}")
    with _mapped_errors():
        rgb = _to_rgb(img)
        # Box-reduce huge images first; fit() then only resamples a few times the target.
        factor = min(rgb.size) // (4 * size)
        if factor >= 2:
            rgb = rgb.reduce(factor)
        thumb = ImageOps.fit(rgb, (size, size), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        thumb.save(out, "JPEG", quality=quality)
    return out.getvalue()


def decode_thumbnail(data: bytes) -> Image.Image:
    """Decode bytes made by :func:`thumbnail_jpeg` (or any supported image) to RGB.

    Parameters
    ----------
    data
        Encoded image bytes, for example read back from a cache.

    Returns
    -------
    PIL.Image.Image
        A new, fully loaded image in mode ``"RGB"``.

    Raises
    ------
    ImageError
        If the bytes are empty, not an image, or corrupt.
    """
    return open_image(data)


def _decode(
    data: bytes, max_pixels: int, draft: tuple[int, int] | None = None
) -> tuple[Image.Image, Image.Image]:
    """Return the opened file and its upright RGB version (which may be the same object)."""
    with _named_format(data), _mapped_errors(max_pixels):
        with _OPEN_LOCK, warnings.catch_warnings():
            # Our own limit below replaces Pillow's DecompressionBombWarning.
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data), formats=_FORMATS)
        _check_pixels(img.size, max_pixels)
        if img.format in ("JPEG", "MPO"):
            scans = _jpeg_scans(data, MAX_JPEG_SCANS)
            if scans > MAX_JPEG_SCANS:
                raise ImageError(
                    f"The JPEG has more than {MAX_JPEG_SCANS} scans (progressive passes); "
                    "decoding it would take minutes. Save it again as a normal JPEG."
                )
        if draft is not None:
            img.draft("RGB", draft)
        cost = decode_cost(img.mode, img.size, "transparency" in img.info)
        if cost > MAX_DECODED_BYTES:
            raise ImageError(
                f"The image is too large to decode: {img.size[0]}x{img.size[1]} pixels in "
                f"mode {img.mode} need {_format_bytes(cost)}; the limit is "
                f"{_format_bytes(MAX_DECODED_BYTES)}. Save it as an 8-bit JPEG or PNG, or "
                "smaller."
            )
        with _BUDGET.hold(cost):
            img.load()
            return img, _upright_rgb(img)


# Bytes a pixel takes in Pillow's memory, by mode (RGB is stored in 4 bytes).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "I;16": 2, "I;16L": 2}
_MODE_BYTES.update({"I;16B": 2, "I;16N": 2})


def decode_cost(mode: str, size: tuple[int, int], transparency: bool = False) -> int:
    """Bytes a decode of an image of ``mode`` and ``size`` holds: its pixels as Pillow
    stores them, the RGB copy (and, for alpha, the RGBA one) :func:`open_image` makes, and
    the decoder's row buffers (which make a 1 x 40,000,000 PNG cost more than its pixels)."""
    width, height = size
    pixels = width * height
    stored = _MODE_BYTES.get(mode, 4)
    if mode == "RGB" and not transparency:
        extra = 0
    elif mode in _SIXTEEN_BIT or mode in ("I", "F"):
        extra = 4 + 1 + 4  # numpy's copy, the 8-bit array (scaled a block at a time), RGB
    elif mode in _WITH_ALPHA or transparency:
        extra = 4 + 4  # RGBA, then RGB
    else:
        extra = 4
    lines = 2 * width * 4  # a decoder's current and previous row (a PNG's filters)
    return pixels * (stored + extra) + lines


class _Budget:
    """Bytes all decodes of the process may hold at once; a decode waits for room."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, cost: int) -> Iterator[None]:
        cost = min(cost, self.limit)  # one decode alone always fits
        with self._cond:
            if not self._cond.wait_for(
                lambda: self.held + cost <= self.limit, timeout=DECODE_WAIT_SECONDS
            ):
                raise ImageError(
                    "The server is busy decoding other large images; try again in a minute."
                )
            self.held += cost
        try:
            yield
        finally:
            with self._cond:
                self.held -= cost
                self._cond.notify_all()


_BUDGET = _Budget(DECODE_BUDGET)


def _jpeg_scans(data: bytes, limit: int) -> int:
    """How many scans (SOS markers) the first JPEG in ``data`` has, counting up to
    ``limit + 1``. Segments are skipped by their length, so an EXIF thumbnail's scans are not
    counted; in the entropy-coded data a 0xFF byte is a marker only when not followed by 0."""
    n = len(data)
    i = 2  # after SOI
    scans = 0
    while i + 1 < n:
        if data[i] != 0xFF:
            i = data.find(b"\xff", i)
            if i < 0:
                break
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x00 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2  # stuffed byte, restart marker, TEM: no length
            continue
        if marker == 0xD9:  # EOI
            break
        if i + 3 >= n:
            break
        length = (data[i + 2] << 8) | data[i + 3]
        if marker == 0xDA:
            scans += 1
            if scans > limit:
                break
        i += 2 + length
    return scans


@contextlib.contextmanager
def _named_format(data: bytes) -> Iterator[None]:
    """Name the format in an error about a file of a less common one ("HEIC photo: ...")."""
    try:
        yield
    except ImageError as exc:
        kind = sniff(data[:HEAD_BYTES])
        if kind not in _NAMED:
            raise
        what = "video" if kind in VIDEOS else "photo"
        reason = str(exc)
        if kind in VIDEOS:
            reason = "a video, not a photo; export a still frame as JPEG."
        elif "supported format" in reason and kind in ("HEIC", "HEIF") and register_heif_opener:
            reason = _CORRUPT  # the plugin is there: it refused a broken file
        elif "supported format" in reason:
            reason = f"this format cannot be read here; convert it to JPEG ({SUPPORTED} are read)."
        raise ImageError(f"{kind} {what}: {reason[:1].lower()}{reason[1:]}") from exc


@contextlib.contextmanager
def _mapped_errors(max_pixels: int = MAX_PIXELS) -> Iterator[None]:
    """Turn anything Pillow raises on bad input into an ImageError with a user message."""
    try:
        yield
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(_bomb_message(exc, max_pixels)) from exc
    except Image.DecompressionBombWarning as exc:  # only raised when warnings are errors
        raise ImageError(_bomb_message(exc, max_pixels)) from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageError(_UNSUPPORTED) from exc
    except MemoryError as exc:
        raise ImageError(_NO_MEMORY) from exc
    except Exception as exc:
        # Decoders fail on hostile input with OSError, SyntaxError, ValueError, TypeError,
        # struct.error, IndexError, EOFError...; to a user they all mean a broken file.
        raise ImageError(_CORRUPT) from exc


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"The image has no pixels ({width}x{height}).")
    if width * height > max_pixels:
        raise ImageError(
            f"The image is too large: {width}x{height} pixels; "
            f"the limit is {_megapixels(max_pixels)}."
        )


def _bomb_message(exc: Exception, max_pixels: int) -> str:
    # Pillow refuses before we see the dimensions; its message carries the pixel count.
    found = re.search(r"\((\d+) pixels\)", str(exc))
    declared = _megapixels(int(found.group(1))) if found else "too many pixels"
    return f"The image is too large: {declared}; the limit is {_megapixels(max_pixels)}."


def _upright_rgb(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation, then convert to RGB; returns ``img`` itself if neither applies."""
    try:
        if img.getexif().get(ExifTags.Base.Orientation, 1) in range(2, 9):
            # Also removes the tag, so a second pass does not rotate again.
            img = ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF must not cost the user a readable picture
        pass
    return _to_rgb(img)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Return ``img`` as RGB: alpha over white, wide greyscale scaled to 8 bits."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode in _SIXTEEN_BIT or img.mode in ("I", "F"):
        return Image.fromarray(_scale_to_uint8(img.mode, np.asarray(img))).convert("RGB")
    if img.mode in _WITH_ALPHA or "transparency" in img.info:
        if img.mode == "La":
            img = img.convert("LA")
        rgba = img.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba, mask=rgba)
        return rgb
    return img.convert("RGB")


def _scale_to_uint8(mode: str, values: np.ndarray) -> np.ndarray:
    """Map greyscale wider than 8 bits onto 0..255 without clipping, a block of values at a
    time (a float image is never copied whole in float)."""
    flat = values.reshape(-1)
    out = np.empty(flat.shape, dtype=np.uint8)
    block = 1 << 20
    if mode in _SIXTEEN_BIT:
        for start in range(0, flat.size, block):
            out[start : start + block] = flat[start : start + block] >> 8
        return out.reshape(values.shape)
    low, high = np.inf, -np.inf
    for start in range(0, flat.size, block):
        part = _finite(flat[start : start + block])
        low, high = min(low, float(part.min())), max(high, float(part.max()))
    if low >= 0 and high <= 1 and mode == "F":
        scale, low = 255.0, 0.0
    elif low >= 0 and high <= 255:
        scale, low = 1.0, 0.0
    elif low >= 0 and high <= 65535:
        scale, low = 1 / 257, 0.0
    else:  # an unusual range: stretch what is there
        scale = 255 / (high - low) if high > low else 0.0
    for start in range(0, flat.size, block):
        part = _finite(flat[start : start + block])
        out[start : start + block] = np.clip(np.rint((part - low) * scale), 0, 255)
    return out.reshape(values.shape)


def _finite(part: np.ndarray) -> np.ndarray:
    return np.nan_to_num(part.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def _read_path(path: str | os.PathLike, limit: int) -> bytes:
    shown = os.fsdecode(path)
    try:
        with _open_regular(path) as file:
            size = os.fstat(file.fileno()).st_size
            if size > limit:
                raise ImageError(_too_many_bytes(size, limit))
            # Read with the cap anyway: pipes and /proc files report a size of 0.
            return _read_capped(file, limit)
    except ImageError:
        raise
    except FileNotFoundError as exc:
        raise ImageError(f"There is no file at '{shown}'.") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"The path '{shown}' is a folder, not an image file.") from exc
    except PermissionError as exc:
        raise ImageError(f"The file '{shown}' cannot be read: permission denied.") from exc
    except OSError as exc:
        raise ImageError(f"The file '{shown}' cannot be read: {_reason(exc)}.") from exc
    except ValueError as exc:  # a NUL character in the path
        raise ImageError(f"There is no file at '{shown}'.") from exc


def _open_regular(path: str | os.PathLike) -> IO[bytes]:
    """Open ``path`` for reading only if it is a regular file, checked on the opened
    descriptor (a FIFO would block ``open`` and ``read``; a device never ends; a name
    checked before opening can be swapped before it is opened)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a folder", os.fsdecode(path))
            raise ImageError(
                f"The path '{os.fsdecode(path)}' is not a regular file (a pipe, device or "
                "socket); give the path of an image file."
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_member(member: zipfile.Path, limit: int) -> bytes:
    """A member's bytes, decompressed under the bounds of :mod:`recommender.archives` (a
    member lying about its size, or expanding past the ratio bound, is refused early)."""
    shown = f"{member.root.filename}/{member.at}"
    try:
        size = member.root.getinfo(member.at).file_size
        if size > limit:
            raise ImageError(_too_many_bytes(size, limit))
        return read_member(member.root, member.at, cap=limit, shown=shown)
    except ImageError:
        raise
    except MemberTooLarge as exc:
        raise ImageError(f"The file is larger than the {_format_bytes(limit)} limit.") from exc
    except (limits.LimitExceeded, MemberForged) as exc:
        raise ImageError(f"Over the decompression limit: {exc}.") from exc
    except MemberError as exc:
        raise ImageError(f"{exc}.") from exc
    except KeyError as exc:
        raise ImageError(f"There is no file at '{shown}'.") from exc
    except (
        OSError,
        ValueError,
        EOFError,
        RuntimeError,
        NotImplementedError,
        zipfile.BadZipFile,
        zlib.error,
    ) as exc:
        raise ImageError(f"The file '{shown}' cannot be read from its archive: {exc}.") from exc


def _read_capped(file: IO[bytes], limit: int) -> bytes:
    """Read to the end, but refuse as soon as more than ``limit`` bytes have arrived."""
    chunks = []
    total = 0
    while total <= limit:
        chunk = file.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            break
        if not isinstance(chunk, (bytes, bytearray)):
            raise TypeError("the file object must be opened in binary mode ('rb')")
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise ImageError(f"The file is larger than the {_format_bytes(limit)} limit.")
    return b"".join(chunks)


def _too_many_bytes(size: int, limit: int) -> str:
    return f"The file is too large: {_format_bytes(size)}; the limit is {_format_bytes(limit)}."


def _format_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    value, unit = (count / 1024, "KB") if count < 1024 * 1024 else (count / 1024**2, "MB")
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:g} megapixels"


def _reason(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


def _positive(value: int, name: str) -> int:
    value = operator.index(value)
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


# Register every plugin now rather than lazily from several threads at once. HEIF without
# its embedded thumbnails (never used); libheif keeps its own security limits on.
Image.init()
if register_heif_opener is not None:
    register_heif_opener(thumbnails=False)
