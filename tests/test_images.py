"""Tests for recommender.vision.images: hostile input is refused cleanly, odd images decode right.

Every fixture is made here with Pillow (or, for the decompression bomb, by hand).
"""

from __future__ import annotations

import hashlib
import io
import random
import struct
import time
import tracemalloc
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFile

from recommender.errors import ImageError, RecommenderError
from recommender.vision import images
from recommender.vision.images import (
    content_hash,
    decode_thumbnail,
    load_for_model,
    open_image,
    read_bytes,
    thumbnail_jpeg,
    to_model_input,
)

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


# ---------------------------------------------------------------- fixtures


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def photo(size: tuple[int, int]) -> Image.Image:
    """A photo-like RGB image: a colour gradient with noise, so it does not compress away."""
    gradient = Image.linear_gradient("L").resize(size)
    noise = Image.effect_noise(size, 40)
    return Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.ROTATE_180)))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG of a few hundred bytes whose header declares width x height RGB pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


GOOD_PNG = encode(photo((48, 32)), "PNG")
GOOD_JPEG = encode(photo((256, 192)), "JPEG", quality=90)


def assert_one_sentence(message: str, *causes: str) -> None:
    assert message[0].isupper() and message.endswith("."), message
    assert "\n" not in message and ". " not in message, message
    assert any(cause in message.lower() for cause in causes), message


def assert_still_works() -> None:
    """After any refusal, the next request decodes normally."""
    assert open_image(GOOD_PNG).size == (48, 32)
    assert load_for_model(GOOD_JPEG, 32).shape == (32, 32, 3)


def assert_model_ready(img: Image.Image, size: int = 24) -> np.ndarray:
    assert img.mode == "RGB"
    array = to_model_input(img, size)
    assert array.shape == (size, size, 3) and array.dtype == np.uint8
    assert array.flags.c_contiguous
    return array


def pixel(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(img)[xy[1], xy[0]])


def close(actual, expected, tolerance: int = 12) -> bool:
    return all(abs(int(a) - int(e)) <= tolerance for a, e in zip(actual, expected, strict=True))


# ---------------------------------------------------------------- refused input


def refusal(source, *causes: str, **kwargs) -> str:
    with pytest.raises(ImageError) as caught:
        open_image(source, **kwargs)
    message = str(caught.value)
    assert_one_sentence(message, *causes)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, RecommenderError)
    return message


def refused(source, *causes: str, **kwargs) -> str:
    message = refusal(source, *causes, **kwargs)
    assert_still_works()
    return message


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert refused(path, "empty") == "The file is empty (0 bytes)."
    refused(b"", "empty")
    refused(io.BytesIO(), "empty")


@pytest.mark.parametrize(
    "content",
    [
        b"Just some notes, not a picture.\n",
        b"<!DOCTYPE html><html><head><title>Oops</title></head><body>404</body></html>\n",
        random.Random(0).randbytes(4096),
    ],
    ids=["text", "html", "random"],
)
def test_not_an_image(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    message = refused(path, "not an image")
    assert message == f"This file is not an image in a supported format ({images.SUPPORTED})."
    refused(content, "not an image")


def test_truncated_jpeg() -> None:
    message = refused(GOOD_JPEG[: len(GOOD_JPEG) // 2], "truncated")
    assert message == "The image is truncated or corrupt."


def test_png_with_broken_pixel_data() -> None:
    data = bytearray(GOOD_PNG)
    start = data.index(b"IDAT") + 4
    data[start : start + 40] = bytes(40)
    refused(bytes(data), "corrupt")


def test_decompression_bomb_is_refused_before_decoding(monkeypatch) -> None:
    bomb = png_declaring(30_000, 30_000)
    assert len(bomb) < 200
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: decoded.append(self) or real_load(self)
    )
    tracemalloc.start()
    started = time.perf_counter()
    try:
        for _ in range(3):
            with pytest.raises(ImageError) as caught:
                open_image(bomb)
            with pytest.raises(ImageError):
                load_for_model(bomb, 224)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 50 * 1024 * 1024
    assert decoded == []
    limit = "the limit is 40 megapixels"
    assert str(caught.value) == f"The image is too large: 900 megapixels; {limit}."
    assert_still_works()


@pytest.mark.parametrize(
    "size", [(8000, 6000), (10_000, 10_000), (40_001, 1000)], ids=["48MP", "100MP", "wide"]
)
def test_oversized_images_name_their_size(size: tuple[int, int]) -> None:
    # 100 MP is past Pillow's own warning threshold: that warning must not leak out.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message = refused(png_declaring(*size), "too large")
    width, height = size
    assert (
        message == f"The image is too large: {width}x{height} pixels; the limit is 40 megapixels."
    )
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_bomb_warning_as_error_is_still_an_image_error() -> None:
    # Some servers run with -W error; Pillow's warning must not escape as an exception.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        refused(png_declaring(10_000, 10_000), "too large")


def test_pixel_limit_is_a_parameter() -> None:
    refused(GOOD_PNG, "too large", max_pixels=1000)
    message = refused(Image.new("RGB", (100, 100)), "too large", max_pixels=5000)
    assert message == "The image is too large: 100x100 pixels; the limit is 0.005 megapixels."
    assert open_image(GOOD_PNG, max_pixels=48 * 32).size == (48, 32)


def test_a_6000x4000_photo_is_within_the_default_limit() -> None:
    assert 6000 * 4000 <= images.MAX_PIXELS


def test_file_over_max_bytes(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(images, "MAX_BYTES", 1000)
    assert len(GOOD_PNG) > 1000
    path = tmp_path / "big.png"
    path.write_bytes(GOOD_PNG)
    size = f"{len(GOOD_PNG) / 1024:.1f} KB"
    assert refusal(path, "too large") == f"The file is too large: {size}; the limit is 1000 bytes."
    refusal(GOOD_PNG, "too large")
    stream = io.BytesIO(GOOD_PNG)
    assert refusal(stream, "larger") == "The file is larger than the 1000 bytes limit."
    assert stream.tell() <= 1001, "an oversized stream must not be read to the end"
    monkeypatch.undo()
    assert_still_works()


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    assert refused(missing, "no file") == f"There is no file at '{missing}'."
    refused(str(missing), "no file")


def test_folder_path(tmp_path: Path) -> None:
    refused(tmp_path, "folder")


def test_refusals_from_every_public_function(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no file"):
        read_bytes(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="not an image"):
        load_for_model(b"GIF89a but not really", 224)
    with pytest.raises(ImageError, match="truncated"):
        decode_thumbnail(GOOD_JPEG[:300])
    lazy = Image.open(io.BytesIO(GOOD_JPEG[: len(GOOD_JPEG) // 2]))
    with pytest.raises(ImageError, match="truncated"):
        to_model_input(lazy, 16)
    lazy = Image.open(io.BytesIO(GOOD_JPEG[: len(GOOD_JPEG) // 2]))
    with pytest.raises(ImageError, match="truncated"):
        thumbnail_jpeg(lazy)
    with pytest.raises(TypeError):
        read_bytes(12345)
    with pytest.raises(ValueError, match="size"):
        to_model_input(Image.new("RGB", (4, 4)), 0)


# ---------------------------------------------------------------- accepted input


def test_one_pixel() -> None:
    img = open_image(encode(Image.new("RGB", (1, 1), GREEN), "PNG"))
    assert img.size == (1, 1)
    assert (assert_model_ready(img) == GREEN).all()


@pytest.fixture(scope="module")
def big_photo() -> bytes:
    """A 6000x4000 JPEG, red in the top-left quarter, so squashing and scaling show."""
    img = photo((6000, 4000))
    ImageDraw.Draw(img).rectangle((0, 0, 2999, 1999), fill=RED)
    return encode(img, "JPEG", quality=85)


def test_big_phone_photo_uses_reduced_decode(big_photo: bytes) -> None:
    fast = load_for_model(big_photo, 224)
    assert fast.shape == (224, 224, 3) and fast.dtype == np.uint8 and fast.flags.c_contiguous
    full = to_model_input(open_image(big_photo), 224)
    assert np.abs(fast.astype(int) - full).mean() < 4
    assert close(fast[50, 50], RED) and not close(fast[170, 170], RED)
    # libjpeg decoded at 1/8 scale: 750x500 is still at least 2 * 224 on each side.
    with Image.open(io.BytesIO(big_photo)) as img:
        img.draft("RGB", (448, 448))
        assert img.size == (750, 500)


def test_grayscale() -> None:
    img = open_image(encode(Image.linear_gradient("L").resize((40, 30)), "PNG"))
    array = assert_model_ready(img)
    assert (array[..., 0] == array[..., 1]).all() and array.max() > 200 and array.min() < 50


def test_black_and_white() -> None:
    img = open_image(encode(Image.new("1", (8, 8), 1), "BMP"))
    assert pixel(img, (3, 3)) == WHITE


def test_cmyk_jpeg() -> None:
    data = encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode == "CMYK"
    img = open_image(data)
    assert close(pixel(img, (16, 16)), RED)
    assert_model_ready(img)
    assert close(load_for_model(data, 8)[4, 4], RED)


def test_palette_with_transparency() -> None:
    img = Image.new("P", (20, 10), 0)
    img.putpalette([0, 0, 0, *RED] + [0, 0, 0] * 254)
    ImageDraw.Draw(img).rectangle((10, 0, 19, 9), fill=1)
    for fmt in ("PNG", "GIF"):
        decoded = open_image(encode(img, fmt, transparency=0))
        assert pixel(decoded, (2, 5)) == WHITE, fmt
        assert pixel(decoded, (15, 5)) == RED, fmt
        assert_model_ready(decoded)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 64, dtype=np.uint16)
    data = encode(Image.fromarray(np.tile(ramp, (16, 1))), "PNG")
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.mode == "I;16"
    array = np.asarray(open_image(data))
    assert array[0, 0, 0] == 0 and array[0, -1, 0] == 255
    assert len(np.unique(array)) > 50, "a clipped conversion would be mostly 255"
    assert abs(int(array[0, 32, 0]) - 132) <= 2
    assert_model_ready(open_image(data))


@pytest.mark.parametrize("mode", ["I", "F"])
def test_wide_greyscale_modes(mode: str) -> None:
    ramp = np.linspace(0, 65535, 64, dtype=np.float32)
    src = Image.fromarray(np.tile(ramp, (4, 1)).astype(np.int32 if mode == "I" else np.float32))
    assert src.mode == mode
    array = np.asarray(open_image(encode(src, "TIFF")))
    assert array[0, 0, 0] == 0 and array[0, -1, 0] == 255 and len(np.unique(array)) > 50
    unit = Image.fromarray(np.tile(np.linspace(0, 1, 64, dtype=np.float32), (4, 1)))
    assert np.asarray(open_image(unit))[0, -1, 0] == 255
    odd = Image.fromarray(np.array([[-100, 0, 100_000], [-100, -100, -100]], dtype=np.int32))
    assert np.asarray(open_image(odd))[0, :, 0].tolist() == [0, 0, 255]
    flat = Image.fromarray(np.full((2, 2), np.nan, dtype=np.float32))
    assert not np.asarray(open_image(flat)).any()


def test_rgba_over_white() -> None:
    img = Image.new("RGBA", (30, 10), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rectangle((10, 0, 19, 9), fill=(*RED, 255))
    draw.rectangle((20, 0, 29, 9), fill=(*RED, 128))
    decoded = open_image(encode(img, "PNG"))
    assert pixel(decoded, (5, 5)) == WHITE
    assert pixel(decoded, (15, 5)) == RED
    assert close(pixel(decoded, (25, 5)), (255, 127, 127), 2)
    assert_model_ready(decoded)


def test_la_over_white() -> None:
    img = Image.new("LA", (20, 10), (0, 0))
    ImageDraw.Draw(img).rectangle((10, 0, 19, 9), fill=(0, 255))
    decoded = open_image(encode(img, "PNG"))
    assert pixel(decoded, (5, 5)) == WHITE and pixel(decoded, (15, 5)) == (0, 0, 0)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"], ids=["gif", "webp", "apng"])
def test_animation_gives_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, BLUE)]
    params = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **params)
    with Image.open(io.BytesIO(data)) as raw:
        assert getattr(raw, "n_frames", 1) == 2
    assert pixel(open_image(data), (8, 8)) == RED
    assert close(load_for_model(data, 8)[4, 4], RED, 0)


def test_webp() -> None:
    img = Image.new("RGB", (20, 10), GREEN)
    ImageDraw.Draw(img).rectangle((10, 0, 19, 9), fill=BLUE)
    for params in ({"lossless": True}, {"quality": 90}):
        decoded = open_image(encode(img, "WEBP", **params))
        assert close(pixel(decoded, (3, 5)), GREEN) and close(pixel(decoded, (16, 5)), BLUE)


@pytest.mark.parametrize("fmt", ["BMP", "TIFF"])
def test_other_supported_formats(fmt: str) -> None:
    decoded = open_image(encode(Image.new("RGB", (9, 7), BLUE), fmt))
    assert decoded.size == (9, 7) and pixel(decoded, (4, 4)) == BLUE


# HEIC: the iPhone's default format; Instagram exports list photos as .heic since mid-2024
# (pixelfed/pixelfed#5298) and instaloader names files after their Content-Type
# (instaloader.py L341-356 @d3cd639). The files are made here with pillow-heif's encoder.
def heic(img: Image.Image, **params) -> bytes:
    pytest.importorskip("pillow_heif")
    return encode(img, "HEIF", quality=90, **params)


def test_heic_photo_decodes_in_training_and_queries(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 24), GREEN)
    ImageDraw.Draw(img).rectangle((20, 0, 39, 23), fill=BLUE)
    data = heic(img)
    assert data[4:12] == b"ftypheic"
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(data)
    decoded = open_image(path)
    assert decoded.size == (40, 24) and decoded.mode == "RGB"
    assert close(pixel(decoded, (5, 12)), GREEN, 40) and close(pixel(decoded, (34, 12)), BLUE, 40)
    assert load_for_model(data, 16).shape == (16, 16, 3)
    assert "HEIC" in images.SUPPORTED


def test_heic_obeys_the_pixel_limit_before_decoding() -> None:
    data = heic(Image.new("RGB", (64, 64), RED))
    message = refused(data, "too large", max_pixels=64 * 63)
    assert message.startswith("HEIC photo: the image is too large: 64x64 pixels")


def test_a_broken_heic_is_named_in_the_message() -> None:
    data = heic(photo((64, 64)))
    message = refused(data[: len(data) // 2], "truncated")
    assert message == "HEIC photo: the image is truncated or corrupt."


def test_jpeg_bytes_under_a_heic_name_are_read_as_jpeg(tmp_path: Path) -> None:
    # memento-mori media.py fix_file_extensions: exports hold "HEIC files that are actually
    # JPEGs".
    path = tmp_path / "17912345.heic"
    path.write_bytes(GOOD_JPEG)
    assert open_image(path).size == Image.open(io.BytesIO(GOOD_JPEG)).size


def test_a_video_or_an_unreadable_format_is_named() -> None:
    mp4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64)
    assert refused(mp4, "video").startswith("MP4 video: ")
    if "AVIF" in Image.SAVE:  # Pillow built with libavif can write one; it is not read here
        avif = encode(Image.new("RGB", (8, 8), RED), "AVIF")
        assert refused(avif, "avif").startswith("AVIF photo: this format cannot be read here")


def exif_rotated(size: tuple[int, int], orientation: int = 6) -> bytes:
    """A JPEG stored sideways: a red block in the stored top-left corner, the rest green."""
    img = Image.new("RGB", size, GREEN)
    ImageDraw.Draw(img).rectangle((0, 0, size[0] // 4, size[1] // 4), fill=RED)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", quality=95, exif=exif)


def test_exif_orientation_is_applied() -> None:
    img = open_image(exif_rotated((40, 20)))
    # Orientation 6: rotate 90 degrees clockwise to display; top-left goes to top-right.
    assert img.size == (20, 40)
    assert close(pixel(img, (18, 1)), RED) and close(pixel(img, (1, 1)), GREEN)
    assert close(pixel(img, (1, 38)), GREEN) and close(pixel(img, (18, 38)), GREEN)
    assert img.getexif().get(0x0112, 1) == 1
    again = open_image(img)
    assert again.size == (20, 40), "a second pass must not rotate again"


def test_exif_orientation_survives_reduced_decode() -> None:
    data = exif_rotated((4000, 2000))
    array = load_for_model(data, 64)
    # The red block now covers the top-right quarter of the square input.
    assert close(array[4, 60], RED) and close(array[4, 4], GREEN)
    assert close(array[60, 60], GREEN)
    full = to_model_input(open_image(data), 64)
    assert np.abs(array.astype(int) - full).mean() < 3


def test_png_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "holiday.jpg"
    path.write_bytes(GOOD_PNG)
    assert open_image(path).size == (48, 32)


def test_every_kind_of_source(tmp_path: Path) -> None:
    path = tmp_path / "pic.png"
    path.write_bytes(GOOD_PNG)
    expected = np.asarray(open_image(GOOD_PNG))
    with open(path, "rb") as handle:
        sources = [
            GOOD_PNG,
            bytearray(GOOD_PNG),
            memoryview(GOOD_PNG),
            io.BytesIO(GOOD_PNG),
            str(path),
            path,
            handle,
            Image.open(io.BytesIO(GOOD_PNG)),
        ]
        for source in sources:
            if hasattr(source, "seek") and not isinstance(source, Image.Image):
                source.seek(0)
            img = open_image(source)
            assert img.mode == "RGB" and (np.asarray(img) == expected).all(), type(source)
            assert_model_ready(img)
        handle.seek(0)
        assert load_for_model(handle, 16).shape == (16, 16, 3)


def test_pil_image_input_is_not_mutated() -> None:
    original = Image.new("RGBA", (10, 10), (0, 0, 255, 0))
    before = original.tobytes()
    converted = open_image(original)
    assert converted is not original and pixel(converted, (0, 0)) == WHITE
    assert original.mode == "RGBA" and original.tobytes() == before

    rgb = Image.new("RGB", (10, 10), BLUE)
    copy = open_image(rgb)
    assert copy is not rgb
    copy.putpixel((0, 0), RED)
    assert rgb.getpixel((0, 0)) == BLUE
    assert load_for_model(rgb, 4).shape == (4, 4, 3) and rgb.size == (10, 10)


def test_model_input_squashes_the_whole_image() -> None:
    img = Image.new("RGB", (300, 100), RED)
    ImageDraw.Draw(img).rectangle((150, 0, 299, 99), fill=BLUE)
    array = to_model_input(img, 10)
    assert array.shape == (10, 10, 3)
    assert close(array[5, 1], RED, 0) and close(array[5, 8], BLUE, 0)
    array[0, 0] = 0  # a fresh, writable array


def test_read_bytes_and_content_hash(tmp_path: Path) -> None:
    path = tmp_path / "pic.jpg"
    path.write_bytes(GOOD_JPEG)
    for source in (path, str(path), GOOD_JPEG, io.BytesIO(GOOD_JPEG), memoryview(GOOD_JPEG)):
        assert read_bytes(source) == GOOD_JPEG
    assert content_hash(GOOD_JPEG) == hashlib.sha256(GOOD_JPEG).hexdigest()
    assert content_hash(GOOD_JPEG) != content_hash(GOOD_PNG)


def test_thumbnail_round_trip() -> None:
    img = Image.new("RGB", (300, 100), BLUE)
    ImageDraw.Draw(img).rectangle((100, 0, 199, 99), fill=RED)
    data = thumbnail_jpeg(img)
    assert data.startswith(b"\xff\xd8")
    thumb = decode_thumbnail(data)
    assert thumb.size == (128, 128) and thumb.mode == "RGB"
    # Centre-cropped: only the red middle square is left.
    for xy in ((2, 2), (64, 64), (125, 125)):
        assert close(pixel(thumb, xy), RED, 20), xy
    small = decode_thumbnail(thumbnail_jpeg(Image.new("LA", (5000, 3000)), size=32, quality=50))
    assert small.size == (32, 32)


def test_concurrent_use_gives_the_same_answers() -> None:
    inputs = [GOOD_PNG, GOOD_JPEG, b"not an image", png_declaring(10_000, 10_000), b""] * 20
    filters_before = list(warnings.filters)

    def outcome(data: bytes) -> str:
        try:
            return content_hash(load_for_model(data, 16).tobytes())
        except ImageError as exc:
            return str(exc)

    expected = [outcome(data) for data in inputs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(outcome, inputs)) == expected
    assert warnings.filters == filters_before


# ---------------------------------------------------------------- fuzzing

SEEDS = {
    "png": encode(photo((24, 16)), "PNG"),
    "jpeg": encode(photo((24, 16)), "JPEG", quality=80),
    "gif": encode(photo((24, 16)).convert("P"), "GIF"),
    "webp": encode(photo((24, 16)), "WEBP", quality=80),
}

_position = st.floats(min_value=0, max_value=1, exclude_max=True)
_mutation = st.one_of(
    st.tuples(st.just("flip"), _position, st.integers(0, 7)),
    st.tuples(st.just("set"), _position, st.integers(0, 255)),
    st.tuples(st.just("insert"), _position, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), _position, st.integers(1, 64)),
    st.tuples(st.just("truncate"), _position, st.just(0)),
)


def mutate(data: bytes, mutations: list[tuple]) -> bytes:
    out = bytearray(data)
    for kind, where, arg in mutations:
        if not out:
            break
        at = int(where * len(out))
        if kind == "flip":
            out[at] ^= 1 << arg
        elif kind == "set":
            out[at] = arg
        elif kind == "insert":
            out[at:at] = arg
        elif kind == "delete":
            del out[at : at + arg]
        else:
            del out[at:]
    return bytes(out)


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.sampled_from(sorted(SEEDS)),
    mutations=st.lists(_mutation, min_size=1, max_size=4),
)
@example(seed="gif", mutations=[("insert", 0.0, b"\x00\x00\x00\x00ftyp")])  # reads as an MP4
def test_mutated_images_decode_or_raise_image_error(seed: str, mutations: list[tuple]) -> None:
    data = mutate(SEEDS[seed], mutations)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow may warn about the damage it skips
        try:
            array = to_model_input(open_image(data), 16)
        except ImageError as exc:
            # a damaged image, or bytes that now read as another format ("MP4 video: ...")
            assert_one_sentence(str(exc), "image", "file", "photo", "video")
            return
    assert array.shape == (16, 16, 3) and array.dtype == np.uint8
