"""Burned-in text: screen every frame cheaply, read where text may be, let a learned net read the rest (or a
sample of it), black out what is readable, read again.

Four layers, each replaceable:

- :class:`TextScreen`, a classical glyph-stroke prefilter (morphological gradient → horizontal closing →
  components whose vertical-stroke density is that of type). About 1–2 ms on a 512² slice, so every
  frame of every modality can be screened; it returns horizontal bands worth reading.
- a :class:`TextReader` (default :class:`RapidOcrReader`: PP-OCRv4 detection + recognition, ONNX models
  shipped in the wheel, offline), run only on the screened bands; results are cached by band content, so
  text that repeats across the frames of a cine is read once.
- the net, a second :class:`TextReader` whose learned detector (PP-OCRv4's DB text detector, at most
  :data:`NET_MAX_SIDE` px, one thread) reads frames whatever the screen says: every single-frame image,
  and of a series or cine a sample (:func:`net_sample`) that grows to every frame once the net finds text
  the screen missed, so the screen's blind spot for one kind of type is not the product's.
- :func:`clean_burned_in_text`: detect → black out (boxes grown by a margin) → re-detect, until no
  *readable* text is left (recognised characters above a confidence, not graphics) or a round limit.

Redaction happens in the colour space the viewer shows: palette colour becomes RGB through its lookup
table, YBR is decoded to RGB, MONOCHROME1 is blacked with its maximum value. Pixels with no text stay
byte-identical.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

__all__ = [
    "CANDIDATE_MODALITIES",
    "OCR_MODES",
    "Box",
    "BurnedInResult",
    "BurnedInStatus",
    "RapidOcrReader",
    "TextLine",
    "TextReader",
    "TextScreen",
    "clean_burned_in_text",
    "display_frames",
    "needs_text_check",
    "net_sample",
    "screen_changes",
]

# modalities that commonly carry burned-in annotations (PS3.15 E.3.1 examples and practice)
CANDIDATE_MODALITIES = frozenset({"US", "SC", "OT", "XC", "ES", "GM", "SM", "DOC", "IVUS", "XA", "RF", "PX", "IO"})
OCR_MODES = ("all", "candidates", "off")
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), in pixels
REDACT_SCORE = 0.5  # a recognised line with a letter or digit at this confidence is blacked out
READABLE_SCORE = 0.6  # ... and at this confidence with two or more, it is readable text (verification)
NET_EVERY = 10  # of a multi-slice series or cine the net reads every 10th frame besides first, middle, last
NET_FRAMES = ("all", "sample", "none")
NET_MAX_SIDE = 4096  # the net reads images at their own size up to this (brought down, small type vanishes)
NET_MAX_LINE = 64  # a net line taller than this and than an eighth of the frame, where the screen saw no type, is anatomy
_PALETTE_TAGS = (0x00281101, 0x00281102, 0x00281103, 0x00281199, 0x00281201, 0x00281202, 0x00281203,
                 0x00281221, 0x00281222, 0x00281223)


@dataclass(frozen=True)
class TextLine:
    """One recognised line of text: its box (frame pixels), its text and the recogniser's confidence."""

    box: Box
    text: str
    score: float

    @property
    def characters(self) -> int:
        return sum(c.isalnum() for c in self.text)

    def redactable(self) -> bool:
        return self.characters >= 1 and self.score >= REDACT_SCORE

    def readable(self) -> bool:
        """Readable text, as opposed to graphics the recogniser mistook for a glyph (a caliper '+', a tick)."""
        return self.characters >= 2 and self.score >= READABLE_SCORE


class TextReader(Protocol):
    """Reads text lines in an 8-bit greyscale image."""

    name: str

    def read(self, image: np.ndarray) -> list[TextLine]: ...


@dataclass(frozen=True)
class RapidOcrReader:
    """RapidOCR (ONNX runtime, CPU): PP-OCRv4 detection + recognition, no angle classifier. Images whose long
    side exceeds ``max_side`` are read brought down to it; ``threads`` is onnxruntime's (-1: all cores)."""

    max_side: int = 2000
    threads: int = -1
    name: str = "rapidocr"

    @staticmethod
    @functools.cache
    def _engine(max_side: int, threads: int):  # type: ignore[no-untyped-def]
        from rapidocr_onnxruntime import RapidOCR

        # never upscale what it is given (the default blows a 60-px band up to 736 px), no letterboxing; with
        # limit type "max" RapidOCR detects at the image's own size up to 2000 px (it ignores the side length)
        return RapidOCR(det_limit_type="max", det_limit_side_len=max_side, max_side_len=max(2000, max_side),
                        width_height_ratio=-1, intra_op_num_threads=threads, inter_op_num_threads=threads)

    def read(self, image: np.ndarray) -> list[TextLine]:
        import cv2

        factor = min(1.0, self.max_side / max(image.shape[:2]))
        if factor < 1.0:
            image = cv2.resize(image, (round(image.shape[1] * factor), round(image.shape[0] * factor)),
                               interpolation=cv2.INTER_AREA)
        result, _ = self._engine(self.max_side, self.threads)(image, use_cls=False)
        lines = []
        for points, text, score in result or []:
            xs, ys = [p[0] / factor for p in points], [p[1] / factor for p in points]
            box = (int(min(xs)), int(min(ys)), int(np.ceil(max(xs))) + 1, int(np.ceil(max(ys))) + 1)
            lines.append(TextLine(box, str(text), float(score)))
        return lines


@dataclass(frozen=True)
class TextScreen:
    """Classical glyph-stroke prefilter: horizontal bands (y0, y1) of a frame that may hold type.

    Type is dense, high-contrast vertical strokes in a row of similar height; anatomy and graphics are
    not. ``threshold`` is the 0–255 gradient counted as an edge; ``min_strokes`` the edge crossings per
    row per text height a word shows (small type merges strokes: 1.2 keeps 10-px type, measured)."""

    threshold: int = 48
    min_strokes: float = 1.2
    min_height: int = 5
    max_height: int = 64

    def bands(self, grey: np.ndarray) -> list[tuple[int, int]]:
        import cv2

        scale = 1
        while max(grey.shape) > 1100:  # big radiographs: their text is big too
            grey = cv2.resize(grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA)
            scale *= 2
        edges = (cv2.morphologyEx(grey, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) >= self.threshold).astype(np.uint8)
        words = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (7, 1)))
        words = cv2.morphologyEx(words, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        found = cv2.findNonZero(words)
        if found is None:  # most frames: nothing word-shaped at all (labelling even an empty frame costs ms)
            return []
        left, top, width, height = cv2.boundingRect(found)
        _, _, stats, _ = cv2.connectedComponentsWithStats(words[top:top + height, left:left + width], connectivity=8)
        stats[:, 0] += left
        stats[:, 1] += top
        x, y, w, h, area = (stats[1:, i].astype(np.int64) for i in range(5))
        shaped = (h >= self.min_height) & (h <= self.max_height) & (w >= h) & (area >= 0.4 * w * h)
        if not shaped.any():
            return []
        x, y, w, h = x[shaped], y[shaped], w[shaped], h[shaped]
        crossings = cv2.integral((edges[:, 1:] != edges[:, :-1]).astype(np.uint8))
        x1, y1 = np.minimum(x + w, crossings.shape[1] - 1), y + h
        count = crossings[y1, x1] - crossings[y, x1] - crossings[y1, x] + crossings[y, x]
        per_row = count / h
        typed = (per_row / (w / h) >= self.min_strokes) & (per_row >= 6)
        return _merge([(int(a) * scale, int(a + b) * scale) for a, b in zip(y[typed], h[typed], strict=True)],
                      limit=grey.shape[0] * scale)


def _merge(spans: list[tuple[int, int]], *, limit: int) -> list[tuple[int, int]]:
    """Spans grown by half their height (at least 6 px) for context, overlapping ones merged, within [0, limit)."""
    out: list[list[int]] = []
    grown = ((a - max(6, (b - a) // 2), b + max(6, (b - a) // 2)) for a, b in spans)
    for y0, y1 in sorted((max(0, a), min(limit, b)) for a, b in grown):
        if out and y0 <= out[-1][1]:
            out[-1][1] = max(out[-1][1], y1)
        else:
            out.append([y0, y1])
    return [(a, b) for a, b in out]


class BurnedInStatus(StrEnum):
    NOT_CHECKED = "not_checked"  # screening off for this instance: pixels untouched
    NO_TEXT_FOUND = "no_text_found"  # screened (and read where needed): no readable text, pixels untouched
    REDACTED = "redacted"  # text blacked out until a re-read found no readable text
    UNVERIFIED = "unverified"  # readable text remains after the last round, or pixels could not be read


@dataclass(frozen=True)
class BurnedInResult:
    """Outcome of one instance: status, blacked-out regions as (frame, box), share of pixels blanked, rounds,
    and what was looked at (frames screened, flagged by the screen, read by the net)."""

    status: BurnedInStatus
    regions: tuple[tuple[int, Box], ...] = ()
    blanked_fraction: float = 0.0
    rounds: int = 0
    screened_frames: int = 0
    reads: int = 0
    remaining: int = 0  # readable lines left after the last round (UNVERIFIED only)
    flagged_frames: int = 0  # frames the classical screen flagged
    net_frames: tuple[int, ...] = ()  # frames the net read whatever the screen said
    net_hits: int = 0  # frames where the net found readable text the screen had not flagged
    text_frames: int = 0  # frames where the first reading found readable text


def needs_text_check(ds: Dataset, *, mode: str = "all") -> bool:
    """Whether to screen this instance: ``all`` (every image), ``off``, or ``candidates`` (flagged YES, or a
    modality that commonly carries burned-in text)."""
    if mode not in OCR_MODES:
        raise ValueError(f"`mode` must be one of {', '.join(OCR_MODES)}; got {mode!r}")
    if mode != "candidates":
        return mode == "all"
    flagged = str(ds.get("BurnedInAnnotation", "")).upper() == "YES"
    return flagged or str(ds.get("Modality", "")).upper() in CANDIDATE_MODALITIES


def viewer_pixels(ds: Dataset) -> tuple[np.ndarray, str]:
    """Pixels as (frames, rows, cols[, 3]) in the space a viewer shows, and that space's photometric
    interpretation: palette colour through its lookup table to RGB; YBR decoded to RGB (pydicom does)."""
    from pydicom.pixels import apply_color_lut

    photometric = str(ds.PhotometricInterpretation)
    frames = _native_monochrome(ds) if photometric.startswith("MONOCHROME") else None
    if frames is None:
        pixels = ds.pixel_array
        frames = pixels if int(ds.get("NumberOfFrames", 1) or 1) > 1 else pixels[np.newaxis]
    if photometric == "PALETTE COLOR":
        return apply_color_lut(frames, ds), "RGB"
    if photometric.startswith("YBR") or frames.ndim == 4:
        return frames, "RGB"
    return frames, photometric


_NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def _native_monochrome(ds: Dataset) -> np.ndarray | None:
    """Uncompressed little-endian 8/16-bit greyscale read straight from the bytes (what pydicom's decoder does
    for these, ~40× faster): unused high bits masked, signed values sign-extended. None for anything else."""
    bits, stored = int(ds.get("BitsAllocated", 0) or 0), int(ds.get("BitsStored", 0) or 0)
    if (str(ds.file_meta.get("TransferSyntaxUID", "")) not in _NATIVE_LITTLE_ENDIAN or bits not in (8, 16)
            or not 0 < stored <= bits or int(ds.get("SamplesPerPixel", 1) or 1) != 1 or "PixelData" not in ds):
        return None
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    rows, cols, count = int(ds.Rows), int(ds.Columns), int(ds.get("NumberOfFrames", 1) or 1)
    data = ds.PixelData
    if len(data) < rows * cols * count * bits // 8:
        return None  # short pixel data: let pydicom report it
    frames = np.frombuffer(data, dtype=f"<{'i' if signed else 'u'}{bits // 8}", count=rows * cols * count)
    frames = frames.reshape(count, rows, cols)
    if stored < bits:
        shift = bits - stored
        frames = (frames << shift) >> shift if signed else frames & ((1 << stored) - 1)
    return frames.astype(frames.dtype.newbyteorder("="), copy=False)


def display_frames(frames: np.ndarray, photometric: str) -> np.ndarray:
    """8-bit greyscale of what the viewer shows, per frame: the brightest channel of colour (coloured type
    stays bright), full-range stretch, MONOCHROME1 inverted."""
    import cv2

    grey = frames.max(axis=-1) if frames.ndim == 4 else frames
    if grey.dtype not in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64):
        grey = grey.astype(np.float64)  # 32-bit unsigned and other types cv2 cannot stretch
    out = np.stack([cv2.normalize(g, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U) for g in grey])
    return 255 - out if photometric == "MONOCHROME1" else out


def net_sample(flags: Sequence[bool], every: int = NET_EVERY) -> set[int]:
    """Positions of a series or cine the net reads although the screen found nothing there: first, middle,
    last, every ``every``-th, and each whose screen result differs from a neighbour's."""
    n = len(flags)
    return {0, n // 2, n - 1, *range(0, n, max(1, every)), *screen_changes(flags)} if n else set()


def screen_changes(flags: Sequence[bool]) -> set[int]:
    """Positions whose screen result differs from a neighbour's."""
    return {i for i in range(len(flags)) for j in (i - 1, i + 1) if 0 <= j < len(flags) and flags[i] != flags[j]}


@dataclass
class _Reading:
    """Reads frames the screen flags, and those the net is asked to read whatever the screen says; each
    distinct content is screened and read once (cine frames repeat their banners, rounds repeat frames)."""

    screen: TextScreen
    reader: TextReader
    net: TextReader | None = None
    cache: dict[bytes, list[TextLine]] = field(default_factory=dict)
    screened: dict[bytes, list[tuple[int, int]]] = field(default_factory=dict)
    reads: int = 0

    def _bands(self, image: np.ndarray) -> list[tuple[int, int]]:
        key = _content_key(image)
        if key not in self.screened:
            self.screened[key] = self.screen.bands(image)
        return self.screened[key]

    def _read(self, image: np.ndarray, scale: int, y0: int = 0, *, by_net: bool = False) -> list[TextLine]:
        """Lines of ``image`` (read at ``scale`` × its size), boxes in frame pixels, offset by row ``y0``."""
        reader = self.net if by_net and self.net is not None else self.reader
        key = _content_key(image) + (b"net" if reader is self.net else b"")
        if key not in self.cache:
            self.reads += 1
            shown = _local_contrast(image) if reader is self.net else image  # faint type over anatomy stands out
            lines = reader.read(_bordered(_upscaled(shown, scale)))  # type touching the edge is read too
            self.cache[key] = [TextLine(_unborder(t.box, scale, y0, image.shape), t.text, t.score) for t in lines]
        return self.cache[key]

    def _whole(self, grey: np.ndarray, scale: int, *, net: bool) -> tuple[list[TextLine], bool]:
        """All text of a frame the screen flags (read whole: the screen finds type, the reader every line) and
        the net's reading of it when asked; and whether the screen flagged it."""
        flagged = bool(self._bands(_upscaled(grey, scale)))
        lines = self._read(grey, scale) if flagged else []
        if net and self.net is not None:
            lines = lines + self._net_lines(grey, scale)
        return lines, flagged

    def _net_lines(self, image: np.ndarray, scale: int) -> list[TextLine]:
        """The net's readable lines of annotation height (where the screen saw no type, a lone glyph-like mark
        or a '0.0' read into a whole organ is anatomy)."""
        tallest = max(NET_MAX_LINE, min(image.shape[:2]) // 8)
        return [t for t in self._read(image, scale, by_net=True) if t.readable() and t.box[3] - t.box[1] <= tallest]

    def frames(self, grey: np.ndarray, net: Collection[int]) -> tuple[list[list[TextLine]], list[bool]]:
        """Text per frame and whether the screen flagged each; frames in ``net`` are read by the net too. Of a
        cine, what stays put is read once from the static composite; per frame only what moves."""
        scale = _scale(grey[0])
        if len(grey) <= 4:
            read = [self._whole(g, scale, net=i in net) for i, g in enumerate(grey)]
            return [lines for lines, _ in read], [flag for _, flag in read]
        static = np.ptp(grey, axis=0) <= _STATIC_TOLERANCE
        fixed, fixed_flag = self._whole(np.where(static, grey[0], 0).astype(np.uint8), scale, net=bool(net))
        out, flags = [], []
        for i, g in enumerate(grey):
            moving = np.where(static, 0, g).astype(np.uint8)
            lines = list(fixed)
            bands = self._bands(_upscaled(moving, scale))
            for top, bottom in bands:
                y0, y1 = top // scale, -(-bottom // scale)
                lines.extend(self._read(moving[y0:y1], scale, y0))
            if not bands and i in net and self.net is not None:
                lines.extend(self._net_lines(moving, scale))
            out.append(lines)
            flags.append(bool(bands) or fixed_flag)
        return out, flags

    def rows(self, frame: np.ndarray, boxes: list[Box]) -> list[TextLine]:
        """The rows of ``boxes`` (each grown by its height), read again at twice the size: what is left of a
        line whose pieces were blacked out sits in the same rows, within two glyph heights of them."""
        spans = _merge([(y0 - (y1 - y0), y1 + (y1 - y0)) for _, y0, _, y1 in boxes], limit=frame.shape[0])
        found = [line for y0, y1 in spans for line in self._read(frame[y0:y1], 2, y0, by_net=True)]
        return [t for t in found if any(t.box[0] < x1 + 2 * (y1 - y0) and t.box[2] > x0 - 2 * (y1 - y0)
                                        and t.box[1] < y1 and t.box[3] > y0 for x0, y0, x1, y1 in boxes)]


def _local_contrast(image: np.ndarray) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation: grey type on similar tissue (which a viewer's window
    would show plainly, and the full-range stretch does not) gets the contrast the detector needs."""
    import cv2

    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(image)


def _content_key(image: np.ndarray) -> bytes:
    return hashlib.blake2b(image.tobytes(), digest_size=16, salt=np.array(image.shape, "<u8").tobytes()[:16]).digest()


_STATIC_TOLERANCE = 24  # grey levels a pixel may vary across cine frames and still count as fixed (lossy codecs)
_SMALL = 512  # frames with a side below this are read at twice their size (ultrasound and cine type is 5–6 px high)


_BORDER = 16  # black pixels added around what is read: the detector misses type that touches the image edge


def _bordered(image: np.ndarray) -> np.ndarray:
    return np.pad(image, _BORDER)


def _unborder(box: Box, scale: int, y0: int, shape: tuple[int, ...]) -> Box:
    """A box read on a bordered, ``scale``-times image, in the frame's pixels (clipped to the read region)."""
    x0, top, x1, bottom = (max(0, v - _BORDER) for v in box)
    rows, cols = shape[:2]
    return (x0 // scale, top // scale + y0, min(cols, -(-x1 // scale)), min(rows, -(-bottom // scale)) + y0)


def _scale(frame: np.ndarray) -> int:
    return 2 if min(frame.shape) < _SMALL else 1


def _upscaled(image: np.ndarray, scale: int) -> np.ndarray:
    import cv2

    if scale == 1:
        return image
    return cv2.resize(image, (image.shape[1] * scale, image.shape[0] * scale), interpolation=cv2.INTER_LINEAR)


def clean_burned_in_text(
    ds: Dataset, screen: TextScreen, reader: TextReader, *, net: TextReader | None = None, net_frames: str = "sample",
    net_every: int = NET_EVERY, hints: Sequence[Box] = (), max_rounds: int = 3, margin: int = 3,
) -> BurnedInResult:
    """Screen every frame, read what the screen flags, black out readable lines (boxes grown by a margin that
    widens each round), and repeat until nothing readable is left or ``max_rounds`` is reached.

    The ``net`` (a learned detector with its recogniser) reads frames whatever the screen says: ``net_frames``
    is ``all``, ``none`` (a slice its series' sample leaves out) or ``sample`` (:func:`net_sample`; the one
    frame of a single-frame image); once a sample finds readable text the screen missed, it reads every
    frame. Re-reads after a redaction use it too, so the loop converges on what it finds.
    Annotation stays put: a region blacked out on one of a few frames is blacked out on all, and ``hints``
    (regions found on other slices of the series) are blacked out on every frame from the first round.
    Pixel data are rewritten (uncompressed, Explicit VR Little Endian, in the viewer's colour space) only
    when something was blacked out. Sets BurnedInAnnotation = NO only when the last reading found no
    readable text."""
    try:
        frames, photometric = viewer_pixels(ds)
    except Exception:  # noqa: BLE001 - undecodable pixels cannot be verified
        return BurnedInResult(BurnedInStatus.UNVERIFIED)
    reading = _Reading(screen, reader, net)
    grey = display_frames(frames, photometric)
    count, rows, cols = grey.shape[:3]
    every_frame = set(range(count))
    if net_frames not in NET_FRAMES:
        raise ValueError(f"`net_frames` must be one of {', '.join(NET_FRAMES)}; got {net_frames!r}")
    chosen = every_frame if net_frames == "all" and net is not None else set()
    lines, flags = reading.frames(grey, chosen)
    if net_frames == "sample" and net is not None:
        chosen = net_sample(flags, net_every)
        lines, _ = reading.frames(grey, chosen)
        if chosen != every_frame and any(not flags[i] and any(t.readable() for t in lines[i]) for i in chosen):
            chosen = every_frame  # the screen misses this kind of type here: the net reads every frame
            lines, _ = reading.frames(grey, chosen)
    net_read = tuple(sorted(chosen))
    texts = [any(t.readable() for t in per_frame) for per_frame in lines]
    stats = {"screened_frames": count, "flagged_frames": sum(flags), "net_frames": net_read, "text_frames": sum(texts),
             "net_hits": sum(1 for i in net_read if not flags[i] and texts[i])}
    black = frames.max() if photometric == "MONOCHROME1" else (frames.min() if photometric.startswith("MONO") else 0)
    redacted: np.ndarray | None = None
    regions: dict[tuple[int, Box], None] = {}  # in the order blacked out
    pending = list(hints)
    rounds = 0
    while True:
        readable = sum(1 for per_frame in lines for t in per_frame if t.readable())
        to_black = [(i, t.box) for i, per_frame in enumerate(lines) for t in per_frame
                    if t.redactable() and not _covered(t.box, [box for (j, box) in regions if j == i])]
        # after the first round only readable text, or what is left of it beside a blacked-out line, goes on
        if readable == 0 and (not (to_black or pending) or rounds == max_rounds):
            break
        if rounds == max_rounds:
            return BurnedInResult(BurnedInStatus.UNVERIFIED, tuple(regions), 0.0, rounds, reads=reading.reads,
                                  remaining=readable, **stats)
        rounds += 1
        if redacted is None:
            redacted = frames.copy()
        grow = margin + 2 * (rounds - 1)
        own: dict[int, list[Box]] = {}
        for i, box in to_black:
            own.setdefault(i, []).append(box)
        # a few frames read one by one (not a cine, whose fixed text the composite holds): what one shows in a
        # place is blacked out on all
        shared = [box for boxes in own.values() for box in boxes] if 1 < count <= 4 else []
        grown: dict[int, list[Box]] = {}
        for i in range(count):
            for (x0, y0, x1, y1), height in _blocks([*own.get(i, []), *shared]):
                wide = grow + height * rounds // 2  # recognisers cut a line's ends: half a glyph height a round
                tall = grow + height // 4  # ... and hug its glyphs: descenders and anti-aliased edges lie outside
                grown.setdefault(i, []).append((max(0, x0 - wide), max(0, y0 - tall), min(cols, x1 + wide),
                                                min(rows, y1 + tall)))
        for i in range(count):
            for x0, y0, x1, y1 in [*grown.get(i, []), *pending]:
                if (i, (x0, y0, x1, y1)) not in regions:
                    redacted[i, y0:y1, x0:x1] = black
                    grey[i, y0:y1, x0:x1] = 0
                    regions[i, (x0, y0, x1, y1)] = None
        pending = []
        lines, _ = reading.frames(grey, chosen)
        for i, boxes in grown.items() if count <= 4 else ():  # the rows of what was blacked out
            lines[i] = lines[i] + reading.rows(grey[i], boxes)
    if redacted is None:
        ds.BurnedInAnnotation = "NO"
        return BurnedInResult(BurnedInStatus.NO_TEXT_FOUND, reads=reading.reads, **stats)
    blanked = _blanked_fraction(list(regions), redacted.shape[0], rows, cols)
    _write_pixels(ds, redacted, photometric)
    ds.BurnedInAnnotation = "NO"
    return BurnedInResult(BurnedInStatus.REDACTED, tuple(regions), blanked, rounds, reads=reading.reads, **stats)


def _covered(box: Box, regions: list[Box]) -> bool:
    """Whether ``box`` lies inside one of ``regions`` (already blacked out)."""
    return any(r[0] <= box[0] and r[1] <= box[1] and box[2] <= r[2] and box[3] <= r[3] for r in regions)


def _blocks(boxes: list[Box]) -> list[tuple[Box, int]]:
    """Lines merged into the blocks they form, each with the height of its lines: stacked (less than half a
    line's height apart), of like line height, overlapping sideways by half the narrower. What lies between
    the pieces a reader found of a block of annotation is the block's too; labels side by side stay apart."""
    merged = [(box, box[3] - box[1]) for box in boxes]

    def stacked(p: tuple[Box, int], q: tuple[Box, int]) -> bool:
        (a, ha), (b, hb) = p, q
        overlap = min(a[2], b[2]) - max(a[0], b[0])
        gap = max(a[1], b[1]) - min(a[3], b[3])
        return max(ha, hb) <= 1.5 * min(ha, hb) and gap < min(ha, hb) / 2 and overlap >= 0.5 * min(a[2] - a[0], b[2] - b[0])

    while True:
        pair = next(((i, j) for i in range(len(merged)) for j in range(i + 1, len(merged))
                     if stacked(merged[i], merged[j])), None)
        if pair is None:
            return merged
        (a, ha), (b, hb) = merged[pair[0]], merged.pop(pair[1])
        merged[pair[0]] = ((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])), min(ha, hb))


def _blanked_fraction(regions: list[tuple[int, Box]], frames: int, rows: int, cols: int) -> float:
    mask = np.zeros((frames, rows, cols), dtype=bool)
    for i, (x0, y0, x1, y1) in regions:
        mask[i, y0:y1, x0:x1] = True
    return float(mask.mean())


def _write_pixels(ds: Dataset, frames: np.ndarray, photometric: str) -> None:
    """Replace the pixel data with ``frames`` (uncompressed), in ``photometric``; palette tables go."""
    stored_as = str(ds.PhotometricInterpretation)
    for tag in _PALETTE_TAGS:
        if tag in ds:
            del ds[tag]
    bits = int(ds.BitsStored) if stored_as.startswith("MONO") or stored_as == "RGB" else frames.dtype.itemsize * 8
    out = frames if frames.shape[0] > 1 else frames[0]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # first: set_pixel_data refuses big-endian data sets
    ds.set_pixel_data(out.astype(out.dtype.newbyteorder("<")), photometric, bits, generate_instance_uid=False)
