"""A generated recall suite for burned-in text: PHI-like lines and annotation blocks rendered into real public
images, to measure which of them the de-identification engine blacks out.

Backgrounds are real public DICOM from installed packages (pydicom 3.0.2's test files and pydicom-data 1.0.0,
MIT; deid-data 0.0.20, MIT): CT, MR, CR (MONOCHROME1), DX, US (RGB, palette colour, 8-bit monochrome, a YBR
cine) and an RGB secondary capture, 8- and 16-bit, single- and multi-frame. Type is rendered with Debian's
DejaVu and Liberation faces (``make install``), 8–32 px, white, grey or dark on a light box, in corners,
along edges and over anatomy; where the type would not stand out from what is behind it, a backing box of the
other tone is drawn first, as scanners do. A line is *caught* when, on every frame it was drawn on, at least :data:`COVERED`
of its ink lies inside the regions the engine blacked out, or no more than two glyphs' width of it survives.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from hca_assets.dicom.burned_in import BurnedInResult, display_frames, viewer_pixels

__all__ = ["BACKGROUNDS", "COLOURS", "COVERED", "FONTS", "PLACES", "SIZES", "Case", "cases", "caught", "clean_backgrounds",
           "render"]

FONT_DIR = Path("/usr/share/fonts/truetype")
FONTS = {  # family -> faces (Debian fonts-dejavu-core, fonts-liberation)
    "sans": ("dejavu/DejaVuSans.ttf", "liberation/LiberationSans-Regular.ttf"),
    "bold": ("dejavu/DejaVuSans-Bold.ttf", "liberation/LiberationSans-Bold.ttf"),
    "mono": ("dejavu/DejaVuSansMono.ttf", "liberation/LiberationMono-Regular.ttf"),
    "serif": ("dejavu/DejaVuSerif.ttf", "liberation/LiberationSerif-Regular.ttf"),
}
SIZES = (8, 9, 10, 11, 12, 14, 16, 18, 24, 32)  # font size in px (cap height is ~0.7 of it)
COLOURS = ("white", "grey", "dark_on_light")
PLACES = ("top_left", "top_right", "bottom_left", "bottom_right", "top_edge", "left_edge", "over_anatomy")
COVERED = 0.9  # share of a line's ink that must be blacked out for it to count as caught
MIN_CHARS, MIN_CAP = 4, 6  # the goal: every line of at least 4 characters with cap height >= 6 px

# background name -> (package, file name); the file's own modality, photometric and bit depth are kept
BACKGROUNDS = {
    "ct_16bit": ("pydicom-data", "693_UNCR.dcm"),
    "ct_enhanced_2frame": ("pydicom-data", "eCT_Supplemental.dcm"),
    "mr_16bit": ("pydicom-data", "MR2_UNCR.dcm"),
    "mr_siemens": ("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm"),
    "cr_mono1": ("pydicom-data", "RG3_UNCR.dcm"),
    "dx_dog": ("deid-data", "animals"),
    "us_rgb": ("pydicom-data", "US1_UNCR.dcm"),
    "us_palette": ("pydicom-data", "OBXXXX1A.dcm"),
    "us_mono_8bit": ("pydicom-data", "JPGLosslessP14SV1_1s_1f_8b.dcm"),
    "us_ybr_cine": ("pydicom-data", "examples_ybr_color.dcm"),
    "sc_rgb_photo": ("deid-data", "dicom-cookies"),
}
LINES = ("DOE^JANE", "MRN 0048213", "DOB 1957-03-12", "ACC 88412093", "ST JUDE GENERAL", "12/03/1957 F 67Y")


@functools.cache
def _path(package: str, name: str) -> Path:
    if package == "pydicom-data":
        import data_store

        for folder in (Path(data_store.__file__).parent / "data", Path(pydicom.__file__).parent / "data" / "test_files"):
            if (folder / name).is_file():
                return folder / name
        raise FileNotFoundError(name)
    import deid_data

    return min(p for p in (Path(deid_data.__file__).parent / "data" / name).rglob("*") if p.is_file())


def background(name: str) -> Dataset:
    """The background's data set, its pixels decoded and stored uncompressed (a fresh copy each call)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(_path(*BACKGROUNDS[name]))
        if ds.file_meta.TransferSyntaxUID.is_compressed or not ds.file_meta.TransferSyntaxUID.is_little_endian:
            photometric = str(ds.PhotometricInterpretation)
            pixels = ds.pixel_array
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            rgb = photometric.startswith("YBR") or (pixels.shape[-1:] == (3,) and int(ds.SamplesPerPixel) == 3)
            ds.set_pixel_data(pixels, "RGB" if rgb else photometric, int(ds.BitsStored), generate_instance_uid=False)
    return ds


@dataclass(frozen=True)
class Case:
    background: str
    family: str
    face: int  # index into FONTS[family]
    size: int
    colour: str
    place: str
    block: bool  # an annotation block of five lines, else one line

    @property
    def name(self) -> str:
        return f"{self.background}-{self.family}{self.face}-{self.size}px-{self.colour}-{self.place}-{'block' if self.block else 'line'}"


@dataclass(frozen=True)
class Rendered:
    """A case drawn into its background: the data set and, per line, its ink mask (frame pixels) and cap height."""

    case: Case
    dataset: Dataset
    lines: tuple[tuple[str, np.ndarray, int], ...]

    def counted(self) -> list[tuple[str, np.ndarray, int]]:
        """The lines the goal is about (at least 4 characters, cap height at least 6 px)."""
        return [line for line in self.lines if sum(c.isalnum() for c in line[0]) >= MIN_CHARS and line[2] >= MIN_CAP]


def cases(backgrounds: tuple[str, ...] = tuple(BACKGROUNDS), sizes: tuple[int, ...] = SIZES) -> Iterator[Case]:
    """Every background × family × size × colour; face, place and line/block rotate so each appears evenly."""
    rotation = itertools.cycle(itertools.product(range(2), PLACES, (False, True)))
    for bg, family, size, colour in itertools.product(backgrounds, FONTS, sizes, COLOURS):
        face, place, block = next(rotation)
        yield Case(bg, family, face, size, colour, place, block)


def _origin(place: str, width: int, height: int, rows: int, cols: int) -> tuple[int, int]:
    margin_x, margin_y = max(4, cols // 64), max(4, rows // 64)
    return {
        "top_left": (margin_x, margin_y), "top_right": (cols - width - margin_x, margin_y),
        "bottom_left": (margin_x, rows - height - margin_y), "bottom_right": (cols - width - margin_x, rows - height - margin_y),
        "top_edge": ((cols - width) // 2, 1), "left_edge": (1, (rows - height) // 2),
        "over_anatomy": ((cols - width) // 2, (rows - height) // 2),
    }[place]


@functools.cache
def _existing_text(name: str) -> tuple[tuple[int, int, int, int], ...]:
    """Boxes of the text the background already carries (an ultrasound's banner), read whole by the OCR."""
    from hca_assets.dicom.burned_in import RapidOcrReader

    return tuple(line.box for line in RapidOcrReader().read(grey_of(background(name))[0]))


def _clear_of(boxes: tuple[tuple[int, int, int, int], ...], origin: tuple[int, int], width: int, height: int,
              rows: int) -> tuple[int, int]:
    """The origin, moved towards the image's middle row in small steps until the text stays clear of existing
    text (type drawn over type is no one's annotation)."""
    x, y = origin
    step = 6 if y < rows // 2 - height // 2 else -6
    for _ in range(rows // 6):
        if not any(x < b[2] + 2 and x + width + 2 > b[0] and y < b[3] + 2 and y + height + 2 > b[1] for b in boxes):
            break
        y = min(max(0, y + step), rows - height)
    return x, y


def render(case: Case) -> Rendered:
    """Draw the case's text into every frame of its background, in stored values the viewer shows as meant."""
    ds = background(case.background)
    frames, photometric = viewer_pixels(ds)
    rows, cols = frames.shape[1:3]
    font = ImageFont.truetype(str(FONT_DIR / FONTS[case.family][case.face]), case.size)
    texts = LINES[:5] if case.block else (LINES[(case.size + len(case.family)) % len(LINES)],)
    step = int(case.size * 1.4)
    widths = [int(font.getlength(t)) for t in texts]
    width, height = max(widths), step * (len(texts) - 1) + case.size + 2
    x, y = _clear_of(_existing_text(case.background), _origin(case.place, width, height, rows, cols), width, height, rows)
    masks, light = [], Image.new("L", (cols, rows))
    for n, text in enumerate(texts):
        mask = Image.new("L", (cols, rows))
        ImageDraw.Draw(mask).text((x, y + n * step), text, fill=255, font=font)
        masks.append(np.asarray(mask))
    level = {"white": 1.0, "grey": 0.62, "dark_on_light": 0.0}[case.colour]
    behind = float(np.median(display_frames(frames, photometric)[0][max(0, y):y + height, max(0, x):x + width]))
    box_level = 0.92 if level < 0.5 else 0.0  # a backing box of the other tone, as scanners draw one where
    if case.colour == "dark_on_light" or abs(level * 255 - behind) < 64:  # type would not stand out without it
        ImageDraw.Draw(light).rectangle((x - 4, y - 4, x + width + 4, y + height + 4), fill=255)
    cap = font.getbbox("H")[3] - font.getbbox("H")[1]
    ink = np.maximum.reduce(masks) / 255.0
    box = np.asarray(light) / 255.0
    _paint(ds, frames, photometric, ink, box, level, box_level)
    return Rendered(case, ds, tuple((t, m > 127, cap) for t, m in zip(texts, masks, strict=True)))


def _paint(ds: Dataset, frames: np.ndarray, photometric: str, ink: np.ndarray, box: np.ndarray, level: float,
           box_level: float) -> None:
    """Blend the box and then the ink (0–1 coverage) into the pixels at their display levels (0 black, 1 white),
    in each pixel space: stored greys, RGB, or the nearest palette entry."""
    if str(ds.PhotometricInterpretation) == "PALETTE COLOR":  # the viewer's space is RGB: paint in indexes
        stored = ds.pixel_array if int(ds.get("NumberOfFrames", 1) or 1) > 1 else ds.pixel_array[np.newaxis]
        grey = frames.mean(axis=-1)
        index_of = lambda v: int(stored.reshape(-1)[np.abs(grey.reshape(-1) - v).argmin()])  # noqa: E731
        low, high = float(grey.min()), float(grey.max())
        ink_index, light_index = index_of(low + level * (high - low)), index_of(low + box_level * (high - low))
        out = np.where(box > 0.5, light_index, stored)
        out = np.where(ink > 0.5, ink_index, out).astype(stored.dtype)
        ds.PixelData = out.tobytes()
        return
    values = frames.astype(np.float64)
    if photometric.startswith("MONO"):
        low, high = float(values.min()), float(values.max())
        if photometric == "MONOCHROME1":
            low, high = high, low
        lo_hi = low + np.array([level, box_level]) * (high - low)
        ink_value, light_value = lo_hi
        values = values * (1 - box) + light_value * box
        values = values * (1 - ink) + ink_value * ink
    else:
        top = 255.0 if frames.dtype.itemsize == 1 else float(values.max())
        ink, box = ink[..., None], box[..., None]
        values = values * (1 - box) + box_level * top * box
        values = values * (1 - ink) + level * top * ink
    out = np.rint(values).astype(frames.dtype)
    space = photometric if photometric.startswith("MONO") else "RGB"
    ds.set_pixel_data(out if out.shape[0] > 1 else out[0], space, int(ds.BitsStored), generate_instance_uid=False)


def caught(rendered: Rendered, result: BurnedInResult) -> list[bool]:
    """Per counted line: whether it was blacked out on every frame, i.e. at least COVERED of its ink, or all but
    at most two glyphs' width of it (columns of surviving ink ≤ 2 cap heights: no name or ID survives in that)."""
    frames = int(rendered.dataset.get("NumberOfFrames", 1) or 1)
    shape = rendered.lines[0][1].shape
    blanked = np.zeros((frames, *shape), dtype=bool)
    for i, (x0, y0, x1, y1) in result.regions:
        blanked[i, y0:y1, x0:x1] = True
    out = []
    for _, ink, cap in rendered.counted():
        ok = True
        for f in range(frames):
            left = ink & ~blanked[f]
            ok &= bool(1 - left.sum() / ink.sum() >= COVERED or np.count_nonzero(left.any(axis=0)) <= 2 * cap)
        out.append(ok)
    return out


def clean_backgrounds() -> dict[str, Dataset]:
    """Real images without burned-in text (for the false-flag rate): the backgrounds that carry none, and more."""
    names = ("ct_16bit", "ct_enhanced_2frame", "mr_16bit", "mr_siemens", "cr_mono1", "dx_dog")
    extra = {"ct_small": ("pydicom-data", "CT_small.dcm"), "mr_small": ("pydicom-data", "MR_small.dcm"),
             "cr_mono1_rg1": ("pydicom-data", "RG1_UNCR.dcm"), "nm_jpeg2000": ("pydicom-data", "JPEG2000_UNC.dcm"),
             "mr_emri_10frame": ("pydicom-data", "emri_small.dcm"), "ct_jpeg2000": ("pydicom-data", "693_J2KR.dcm")}
    out = {n: background(n) for n in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out.update({n: pydicom.dcmread(_path(*where)) for n, where in extra.items()})
    return out


def grey_of(ds: Dataset) -> np.ndarray:
    """What the viewer shows (for pictures and debugging)."""
    return display_frames(*viewer_pixels(ds))
