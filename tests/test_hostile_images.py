"""Images that are small on disk and costly to decode (issue 26 §2): refused before the
pixels are decoded, with one sentence; what all decodes hold at once is bounded."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.hostile_images import float_tiff, many_scan_jpeg, wide_png
from recommender.errors import ImageError
from recommender.vision import images

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiff_named_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "holiday.png"
    path.write_bytes(float_tiff())
    return path


def test_a_small_40_megapixel_float_tiff_named_png_is_refused_before_decoding(tiff_named_png):
    assert tiff_named_png.stat().st_size < 400_000  # 40 MP under 0.4 MB
    for decode in (images.open_image, lambda s: images.load_for_model(s, 224)):
        with pytest.raises(ImageError, match="too large to decode") as err:
            decode(tiff_named_png)
        assert "\n" not in str(err.value) and "mode F" in str(err.value)


def test_refusing_it_costs_no_decode(tiff_named_png):
    """Peak memory of a fresh process asked to decode it (before: about 0.8 GB)."""
    code = (
        "import resource, sys\n"
        "from recommender.vision import images\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        f"    images.load_for_model({str(tiff_named_png)!r}, 224)\n"
        "except images.ImageError:\n"
        "    pass\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 50  # MB: the header only


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_a_1_by_40_million_png_is_refused_by_its_decoded_bytes(tmp_path, mode):
    data = wide_png(mode=mode)
    assert len(data) < 200_000
    with pytest.raises(ImageError, match="too large to decode"):
        images.load_for_model(data, 224)


def test_decode_cost_counts_mode_and_copies():
    rows = 2 * 4  # two rows of 4-byte pixels, per pixel of width
    assert images.decode_cost("RGB", (6000, 4000)) == 24_000_000 * 4 + 6000 * rows
    assert images.decode_cost("F", (8000, 5000)) == 40_000_000 * 13 + 8000 * rows
    assert images.decode_cost("L", (100, 100)) == 10_000 * 5 + 100 * rows
    assert images.decode_cost("P", (100, 100), transparency=True) == 10_000 * 9 + 100 * rows
    assert images.decode_cost("RGB", (8000, 5000)) <= images.MAX_DECODED_BYTES  # 40 MP RGB
    assert images.decode_cost("RGB", (40_000_000, 1)) > images.MAX_DECODED_BYTES


def test_a_big_jpeg_is_judged_after_its_reduced_decode(tmp_path):
    # 9000 x 4800 = 43 MB in RGB decoded whole; drafted for a 224 px model input it is 1/8.
    out = io.BytesIO()
    Image.new("RGB", (7000, 5000), (120, 30, 200)).save(out, "JPEG", quality=50)
    pixels = images.load_for_model(out.getvalue(), 224, max_pixels=40_000_000)
    assert pixels.shape == (224, 224, 3)


def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding():
    data = many_scan_jpeg(scans=2_000, size=(256, 256))
    assert images._jpeg_scans(data, 10**6) == 2_000
    start = time.process_time()
    with pytest.raises(ImageError, match="scans") as err:
        images.load_for_model(data, 224)
    assert time.process_time() - start < 0.5  # refused from the markers, not decoded
    assert "\n" not in str(err.value)


def test_usual_jpegs_are_counted_right_and_decode():
    img = Image.linear_gradient("L").convert("RGB")
    for progressive, expected in ((False, 1), (True, None)):
        out = io.BytesIO()
        img.save(out, "JPEG", progressive=progressive)
        scans = images._jpeg_scans(out.getvalue(), images.MAX_JPEG_SCANS)
        assert scans == expected if expected else 2 <= scans <= 12
        assert images.open_image(out.getvalue()).size == (256, 256)


def test_an_exif_thumbnail_is_not_counted_as_a_scan():
    thumb = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(thumb, "JPEG", progressive=True)
    exif = Image.Exif()
    exif[0x010F] = "camera"
    raw = exif.tobytes()
    out = io.BytesIO()
    Image.new("RGB", (300, 200), "blue").save(out, "JPEG", exif=raw + thumb.getvalue())
    assert images._jpeg_scans(out.getvalue(), 100) == 1


def test_decodes_wait_for_room_in_the_budget(monkeypatch):
    budget = images._Budget(100)
    order: list[str] = []
    inside = threading.Event()

    def first():
        with budget.hold(80):
            inside.set()
            time.sleep(0.3)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait()
    with budget.hold(50):  # waits: 80 + 50 > 100
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"] and budget.held == 0


def test_a_decode_that_waits_too_long_is_refused(monkeypatch):
    monkeypatch.setattr(images, "DECODE_WAIT_SECONDS", 0.05)
    budget = images._Budget(100)
    with budget.hold(100):
        with pytest.raises(ImageError, match="busy"):
            with budget.hold(1):
                pass
    assert budget.held == 0
