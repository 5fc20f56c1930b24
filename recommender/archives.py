"""Read a zip archive's member without trusting what the archive says about it.

:mod:`zipfile` decompresses a bzip2 or lzma member a whole compressed block at a time, so a
member declaring 20 kB can make it build a gigabyte before anything is checked. Here the
member's compressed bytes are read raw and decompressed with a cap on every step: reading
stops, with one line naming the member, as soon as it

* grows past its declared size (the archive lies about it),
* grows past the bound for one member (:data:`recommender.limits.MEMBER`) or the caller's
  own cap,
* expands more than :data:`recommender.limits.RATIO` times its compressed bytes (above
  :data:`recommender.limits.RATIO_FLOOR`).

Stored, deflate, bzip2 and lzma members are read; encrypted ones and other methods are
refused. The CRC-32 is checked at the end.
"""

from __future__ import annotations

import bz2
import copy
import lzma
import zipfile
import zlib

from recommender import limits
from recommender.errors import RecommenderError

_RAW_CHUNK = 64 << 10
_STEP = 1 << 20


class MemberError(RecommenderError, ValueError):
    """An archive member cannot be read: damaged, encrypted, or lying about its size."""


class MemberForged(MemberError):
    """A member decompresses to more than it declares (a decompression bomb, or damage)."""


class MemberTooLarge(MemberError):
    """A member is larger than the caller's own cap."""


class _Zlib:
    def __init__(self) -> None:
        self._d = zlib.decompressobj(-15)

    @property
    def needs_input(self) -> bool:
        return not self._d.unconsumed_tail

    @property
    def eof(self) -> bool:
        return self._d.eof

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return self._d.decompress(self._d.unconsumed_tail + data, max_length)


class _Lzma:
    """The zip flavour of lzma: a 4-byte header, the LZMA1 properties, a raw stream."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._head = b""
        self._d: lzma.LZMADecompressor | None = None

    @property
    def needs_input(self) -> bool:
        return self._d is None or self._d.needs_input

    @property
    def eof(self) -> bool:
        return self._d is not None and self._d.eof

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._d is None:
            self._head += data
            if len(self._head) < 4:
                return b""
            size = int.from_bytes(self._head[2:4], "little")
            if len(self._head) < 4 + size:
                return b""
            props = self._head[4 : 4 + size]
            if size < 5 or props[0] >= 9 * 5 * 5:
                raise lzma.LZMAError("bad LZMA properties")
            lc, rest = props[0] % 9, props[0] // 9
            # No back-reference can reach further than the bytes allowed out: a dictionary
            # larger than that (a hostile header may ask for 4 GB) is never needed.
            dict_size = min(int.from_bytes(props[1:5], "little"), self._cap + 1)
            lzma_filter = {
                "id": lzma.FILTER_LZMA1,
                "dict_size": max(dict_size, 4096),
                "lc": lc,
                "lp": rest % 5,
                "pb": rest // 5,
            }
            self._d = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[lzma_filter])
            data, self._head = self._head[4 + size :], b""
        return self._d.decompress(data, max_length)


class MemberReader:
    """A bounded binary reader of one member (see the module docstring); ``read(n)`` only."""

    def __init__(
        self,
        archive: zipfile.ZipFile,
        member: str | zipfile.ZipInfo,
        cap: int | None = None,
        shown: str | None = None,
    ) -> None:
        info = member if isinstance(member, zipfile.ZipInfo) else archive.getinfo(member)
        self.info = info
        self.shown = shown or f"{archive.filename}/{info.filename}"
        self._bound = limits.MEMBER.value()
        self._cap = self._bound if cap is None else min(cap, self._bound)
        self._user_cap = cap is not None and cap < self._bound
        self._ratio = limits.RATIO.value()
        if info.flag_bits & 0x1:
            raise MemberError(f"{self.shown} is encrypted; an archive to read must not be")
        method = info.compress_type
        self._d: _Zlib | bz2.BZ2Decompressor | _Lzma | None
        if method == zipfile.ZIP_DEFLATED:
            self._d = _Zlib()
        elif method == zipfile.ZIP_BZIP2:
            self._d = bz2.BZ2Decompressor()
        elif method == zipfile.ZIP_LZMA:
            self._d = _Lzma(self._cap)
        elif method == zipfile.ZIP_STORED:
            self._d = None
        else:
            raise MemberError(
                f"{self.shown} is compressed with method {method}, which is not read "
                "(use stored, deflate, bzip2 or lzma)"
            )
        self._check(info.file_size, max(info.compress_size, 1), declared=True)
        raw = copy.copy(info)
        raw.compress_type = zipfile.ZIP_STORED
        raw.file_size = info.compress_size
        del raw.CRC  # the stored reader would check the CRC of the compressed bytes
        self._raw = archive.open(raw)
        self._consumed = 0
        self._total = 0
        self._crc = 0
        self._eof = False

    def _check(self, total: int, consumed: int, declared: bool = False) -> None:
        if total > self._cap:
            if self._user_cap:
                raise MemberTooLarge(f"{self.shown} is larger than {self._cap:,} bytes")
            raise limits.LimitExceeded(self.shown, limits.MEMBER)
        if total > limits.RATIO_FLOOR and total > self._ratio * consumed:
            found = f"{'declares' if declared else 'reaches'} {total / consumed:,.0f}x"
            raise limits.LimitExceeded(self.shown, limits.RATIO, found)
        if total > self.info.file_size:
            raise MemberForged(
                f"{self.shown} decompresses to more than the {self.info.file_size:,} bytes "
                "it declares; the archive is damaged or forged"
            )

    def __enter__(self) -> MemberReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left, within the bounds, for ``n < 0``)."""
        if n is None or n < 0:
            n = self._cap + 1 - self._total
        out: list[bytes] = []
        got = 0
        while got < n and not self._eof:
            piece = self._step(min(n - got, _STEP))
            if piece:
                out.append(piece)
                got += len(piece)
        return b"".join(out)

    def _step(self, want: int) -> bytes:
        try:
            if self._d is None:
                piece = self._raw.read(want)
                self._consumed += len(piece)
                if not piece:
                    self._finish()
            else:
                if self._d.eof:
                    self._finish()
                    return b""
                data = b""
                if self._d.needs_input:
                    data = self._raw.read(_RAW_CHUNK)
                    self._consumed += len(data)
                    if not data:
                        raise MemberError(f"{self.shown} is cut short in the archive")
                piece = self._d.decompress(data, want)
        except (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile) as exc:
            raise MemberError(f"{self.shown} cannot be read from its archive: {exc}") from None
        if piece:
            self._total += len(piece)
            self._crc = zlib.crc32(piece, self._crc)
            self._check(self._total, max(self._consumed, 1))
        return piece

    def _finish(self) -> None:
        self._eof = True
        if self._total != self.info.file_size:
            raise MemberError(
                f"{self.shown} holds {self._total:,} bytes, not the {self.info.file_size:,} "
                "it declares; the archive is damaged"
            )
        if self._crc != self.info.CRC:
            raise MemberError(f"{self.shown} fails its CRC-32 check; the archive is damaged")


def read_member(
    archive: zipfile.ZipFile,
    member: str | zipfile.ZipInfo,
    cap: int | None = None,
    shown: str | None = None,
) -> bytes:
    """The whole member, within the bounds (raises :class:`MemberError` or
    :class:`~recommender.limits.LimitExceeded`)."""
    with MemberReader(archive, member, cap, shown) as reader:
        return reader.read()  # to the end: past the cap, the reader raises
