"""Image sizes declared inside compressed pixel data, read before anything is decoded: a decoder allocates what
the codestream says (JPEG 2000 SIZ, JPEG and JPEG-LS SOF), not what the DICOM header says, so a codestream that
declares more than its header is a decompression bomb and is refused. RLE decoders stop at the header's size
(pylibjpeg-rle), so only the segment count is checked there."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import openjpeg
from pydicom.encaps import generate_fragments, parse_basic_offsets
from pydicom.uid import UID, RLELossless, UID_dictionary

__all__ = ["CodestreamError", "CodestreamTooLarge", "FrameSize", "check_codestreams", "declared_sizes"]

_JPEG_SOF = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0), 0xF7})
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: markers without a length field
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


class CodestreamError(ValueError):
    """Compressed pixel data whose size cannot be read, or that declares more than the header; the message
    holds numbers only."""


class CodestreamTooLarge(CodestreamError):
    """A codestream that declares more samples than its header or the limit: a decompression bomb."""


@dataclass(frozen=True)
class FrameSize:
    rows: int
    columns: int
    samples: int


def _jpeg_size(stream: bytes) -> FrameSize:
    """Rows, columns and components from the first SOF (JPEG, lossless JPEG, JPEG-LS SOF55) by walking the
    marker segments; the scan data is never touched."""
    pos = 2
    while pos + 4 <= len(stream):
        if stream[pos] != 0xFF:
            raise CodestreamError(f"JPEG marker expected at byte {pos}")
        marker = stream[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):
            break  # end of image, start of scan: no frame header came first
        (length,) = struct.unpack_from(">H", stream, pos + 2)
        if marker in _JPEG_SOF:
            if pos + 10 > len(stream):
                break
            rows, columns, components = struct.unpack_from(">HHB", stream, pos + 5)
            if rows == 0:
                raise CodestreamError("JPEG frame header leaves the height to a later DNL marker")
            return FrameSize(rows, columns, components)
        pos += 2 + length
    raise CodestreamError("no JPEG frame header (SOF) before the scan data")


def _j2k_size(stream: bytes) -> FrameSize:
    """Rows, columns and components from the SIZ marker of a J2K codestream or JP2 file (openjpeg reads the
    main header only)."""
    try:
        params = openjpeg.get_parameters(stream)
    except Exception as exc:
        raise CodestreamError(f"JPEG 2000 main header cannot be read ({type(exc).__name__})") from exc
    return FrameSize(int(params["rows"]), int(params["columns"]), int(params["samples_per_pixel"]))


def _starts_frame(fragment: bytes, j2k: bool) -> bool:
    if j2k:
        return fragment[:4] == b"\xff\x4f\xff\x51" or fragment[:12] == _JP2_SIGNATURE
    return fragment[:2] == b"\xff\xd8"


def _codec(ts: UID) -> str | None:
    """``j2k``, ``jpeg`` (JPEG processes and JPEG-LS) or None for the transfer syntaxes without a size header
    read here (native, RLE, video, JPEG XL — which no installed decoder reads)."""
    name = UID_dictionary.get(str(ts), ("",))[0]
    if "JPEG 2000" in name:
        return "j2k"
    if name.startswith("JPEG") and not name.startswith("JPEG XL"):
        return "jpeg"
    return None


def _fragments(pixel_data: bytes) -> Iterator[bytes]:
    """The fragments of encapsulated pixel data; broken or cut item tags (pydicom's ValueError, a short read's
    struct.error) as :class:`CodestreamError`."""
    buffer = io.BytesIO(pixel_data)
    try:
        parse_basic_offsets(buffer)
        yield from generate_fragments(buffer)
    except (ValueError, struct.error) as exc:
        raise CodestreamError(f"encapsulated pixel data cannot be parsed ({type(exc).__name__})") from exc


def declared_sizes(pixel_data: bytes, ts: UID) -> Iterator[FrameSize]:
    """The size every frame's codestream declares, one per fragment that starts a codestream (a frame may
    span fragments; only its first holds the header). Transfer syntaxes without a size header yield nothing."""
    codec = _codec(ts)
    if codec is None:
        return
    for fragment in _fragments(pixel_data):
        if _starts_frame(fragment, codec == "j2k"):
            yield _j2k_size(fragment) if codec == "j2k" else _jpeg_size(fragment)


def check_codestreams(pixel_data: bytes, ts: UID, *, rows: int, columns: int, samples: int, bits_allocated: int,
                      max_pixels: int) -> None:
    """Refuse, before decoding, encapsulated pixel data whose codestream declares more samples per frame than
    the header (``rows`` × ``columns`` × ``samples``) or than ``max_pixels``, has no readable size header, or
    (RLE) has more segments than the header's samples and bits allow. Raises :class:`CodestreamError`."""
    allowed = min(rows * columns * samples, max_pixels)
    if ts == RLELossless:
        _check_rle(pixel_data, samples * max(1, -(-bits_allocated // 8)))
        return
    seen = 0
    for size in declared_sizes(pixel_data, ts):
        seen += 1
        declared = size.rows * size.columns * size.samples
        if declared > allowed:
            raise CodestreamTooLarge(f"codestream of frame {seen} declares {size.rows}×{size.columns}×{size.samples}"
                                     f" = {declared} samples; the header allows {allowed}")
    if seen == 0 and _codec(ts) is not None:
        raise CodestreamError("no fragment starts a codestream")


def _check_rle(pixel_data: bytes, segments: int) -> None:
    for fragment in _fragments(pixel_data):  # one fragment per RLE frame (PS3.5 Annex G)
        if len(fragment) < 64:
            raise CodestreamError(f"RLE header is {len(fragment)} bytes, not 64")
        (count,) = struct.unpack_from("<I", fragment)
        if not 1 <= count <= min(15, segments):
            raise CodestreamError(f"RLE frame has {count} segment(s); the header allows {segments}")
