"""Small files that are expensive to decode, as a hostile visitor would send them (issue 26).

Each is built with Pillow from nothing (no download):

* :func:`float_tiff` - a 40-megapixel 32-bit float TIFF, deflate-compressed to about 250 KB,
  to be uploaded under a ``.png`` name (Pillow opens by content, not by name);
* :func:`wide_png` - a 1 x 40,000,000 PNG of about 80-120 KB;
* :func:`many_scan_jpeg` - a progressive JPEG (ITU-T T.81 Annex G) whose last refinement
  scan is repeated: each scan is one more pass over the whole image for the decoder, so
  20,000 scans cost minutes of CPU in a few MB.
"""

from __future__ import annotations

import io

from PIL import Image


def float_tiff(size: tuple[int, int] = (8000, 5000)) -> bytes:
    out = io.BytesIO()
    Image.new("F", size, 0.5).save(out, "TIFF", compression="tiff_adobe_deflate")
    return out.getvalue()


def wide_png(width: int = 40_000_000, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, 1), 0).save(out, "PNG", optimize=False, compress_level=9)
    return out.getvalue()


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment of a JPEG, a scan's entropy-coded data
    included in its SOS segment."""
    out = []
    i = 2
    n = len(data)
    while i < n - 1:
        marker = data[i + 1]
        if marker == 0xD9:
            out.append((marker, i, i + 2))
            break
        length = (data[i + 2] << 8) | data[i + 3]
        end = i + 2 + length
        if marker == 0xDA:  # the entropy-coded data runs to the next real marker
            j = end
            while True:
                j = data.index(b"\xff", j)
                following = data[j + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    j += 2
                    continue
                break
            end = j
        out.append((marker, i, end))
        i = end
    return out


def many_scan_jpeg(scans: int = 20_000, size: tuple[int, int] = (2048, 2048)) -> bytes:
    """A progressive JPEG of about ``scans`` scans (Pillow writes about 10; its smallest
    refinement scan, a few dozen bytes for a smooth picture, is repeated)."""
    smooth = Image.linear_gradient("L").resize(size).convert("RGB")
    out = io.BytesIO()
    smooth.save(out, "JPEG", quality=90, progressive=True)
    data = out.getvalue()
    segments = _segments(data)
    sos = [s for s in segments if s[0] == 0xDA]
    _, start, end = min(sos[1:], key=lambda s: s[2] - s[1])  # not the first (DC) scan
    last_scan = data[start:end]
    eoi = segments[-1][1]
    extra = max(0, scans - len(sos))
    return data[:eoi] + last_scan * extra + data[eoi:]
