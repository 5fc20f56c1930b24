"""What a media file is, from its first bytes: the shapes real exports and downloads hold."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from recommender.filetypes import PHOTOS, VIDEOS, sniff, sniff_file


def encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_pillow_formats(fmt):
    assert sniff(encoded(fmt)[:64]).upper() == fmt and sniff(encoded(fmt)) in PHOTOS


def test_heic_made_by_pillow_heif():
    pytest.importorskip("pillow_heif")
    import recommender.vision.images  # noqa: F401 - registers the HEIF plugin

    assert sniff(encoded("HEIF")) == "HEIC"


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        # pillow_heif as_plugin.py _is_supported_heif: brands heic/heix/.../mif1 at bytes 8-12
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "HEIC"),
        (b"\x00\x00\x00\x14ftypmif1\x00\x00\x00\x00mif1", "HEIF"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "AVIF"),
        # pixelfed/pixelfed#4477: an Instagram export's video without extension (video/mp4)
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41", "MP4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ", "QuickTime"),
        (b"\x00\x00\x00\x18ftyp3gp4\x00\x00\x00\x003gp4isom", "3GP"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm", "WebM"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "AVI"),
        (b"<!DOCTYPE html><html>", None),
        (b"", None),
    ],
)
def test_iso_media_and_videos(head, kind):
    assert sniff(head) == kind
    assert kind is None or (kind in PHOTOS) != (kind in VIDEOS)


def test_sniff_file_reads_files_and_archive_members(tmp_path):
    (tmp_path / "clip").write_bytes(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom")
    assert sniff_file(tmp_path / "clip") == "MP4"
    assert sniff_file(tmp_path / "missing.jpg") is None
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr("media/posts/1.heic", encoded("JPEG"))
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert sniff_file(zipfile.Path(archive, "media/posts/1.heic")) == "JPEG"
        assert sniff_file(zipfile.Path(archive, "media/posts/2.jpg")) is None
