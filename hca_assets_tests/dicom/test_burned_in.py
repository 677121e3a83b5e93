"""Burned-in text on real images: the screen finds type and leaves anatomy alone; real ultrasound (RGB, YBR,
palette colour, 16-bit palette, big endian, cine) comes out with no readable text and its anatomy kept."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageDraw, ImageFont

from hca_assets.dicom.burned_in import (
    BurnedInStatus,
    RapidOcrReader,
    TextLine,
    TextScreen,
    clean_burned_in_text,
    display_frames,
    viewer_pixels,
)
from hca_assets.synthetic.phantoms import ct_volume
from hca_assets_tests.conftest import public_test_files

FILES = {p.name: p for p in public_test_files()}
READER = RapidOcrReader()


def readable_lines(ds: pydicom.Dataset, frames: int = 3) -> list[str]:
    """Every line a full read (no screen) finds readable in the first frames, as the viewer shows them."""
    grey = display_frames(*viewer_pixels(ds))
    return [line.text for g in grey[:frames] for line in READER.read(g) if line.readable()]


def burn(grey: np.ndarray, text: str, at: tuple[int, int], size: int, value: int) -> np.ndarray:
    image = Image.fromarray(grey)
    ImageDraw.Draw(image).text(at, text, fill=value, font=ImageFont.load_default(size=size))
    return np.asarray(image)


@pytest.mark.parametrize("size", [10, 13, 18, 26])
@pytest.mark.parametrize("value", [255, 170])
def test_screen_flags_type_on_a_real_ct_slice(size: int, value: int) -> None:
    grey = display_frames(*viewer_pixels(pydicom.dcmread(FILES["693_UNCR.dcm"])))[0]
    assert TextScreen().bands(grey) == []  # the real slice itself: anatomy, no type
    marked = burn(grey, "DOE^JANE 1957-03-12 MRN 0048213", (20, 440), size, value)
    bands = TextScreen().bands(marked)
    assert any(y0 <= 445 and y1 >= 440 + size // 2 for y0, y1 in bands), bands


@pytest.mark.parametrize("name", ["693_UNCR.dcm", "MR2_UNCR.dcm", "RG3_UNCR.dcm", "CT_small.dcm", "eCT_Supplemental.dcm"])
def test_screen_leaves_real_anatomy_alone(name: str) -> None:
    ds = pydicom.dcmread(FILES[name])
    flagged = [bool(TextScreen().bands(g)) for g in display_frames(*viewer_pixels(ds))]
    if name in ("MR2_UNCR.dcm", "eCT_Supplemental.dcm"):  # flagged (vessels, a table edge): the read finds nothing
        result = clean_burned_in_text(ds, TextScreen(), READER)
        assert result.status == BurnedInStatus.NO_TEXT_FOUND
    else:
        assert not any(flagged)


def test_screen_leaves_phantom_ct_alone() -> None:
    volume = ct_volume(np.random.default_rng(3), slices=12, size=512, lesion=True).pixels
    grey = display_frames(volume, "MONOCHROME2")
    assert sum(bool(TextScreen().bands(g)) for g in grey) == 0


@pytest.mark.parametrize("name", [
    "US1_UNCR.dcm",  # RGB, patient banner
    "US1_J2KR.dcm",  # YBR_RCT, JPEG 2000
    "OBXXXX1A.dcm",  # palette colour, date and time in the banner
    "OBXXXX1A_expb_2frame.dcm",  # palette colour, big endian, 2 frames
    "gdcm-US-ALOKA-16.dcm",  # 16-bit palette
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # monochrome echo, JPEG lossless
    "examples_ybr_color.dcm",  # 30-frame YBR_FULL_422 cine
])
def test_real_ultrasound_comes_out_without_readable_text(name: str) -> None:
    ds = pydicom.dcmread(FILES[name])
    before, before_space = viewer_pixels(ds)
    assert len(readable_lines(ds)) >= 3  # the original does carry readable text
    result = clean_burned_in_text(ds, TextScreen(), READER)
    assert result.status == BurnedInStatus.REDACTED
    assert ds.BurnedInAnnotation == "NO" and "PaletteColorLookupTableUID" not in ds
    assert readable_lines(ds) == []
    assert 0.0 < result.blanked_fraction < 0.2  # text removed, anatomy kept
    after, after_space = viewer_pixels(ds)
    assert after_space == before_space and after.shape == before.shape
    mask = np.zeros(after.shape[:3], dtype=bool)
    for i, (x0, y0, x1, y1) in result.regions:
        mask[i, y0:y1, x0:x1] = True
    assert np.array_equal(after[~mask], before[~mask])  # every pixel outside the boxes is what the viewer showed
    assert not after[mask].any() if after_space == "RGB" else (after[mask] == before.min()).all()  # boxes are black


def test_cine_reads_repeated_text_once() -> None:
    class Counting(RapidOcrReader):
        calls = 0

        def read(self, image: np.ndarray) -> list[TextLine]:
            Counting.calls += 1
            return super().read(image)

    ds = pydicom.dcmread(FILES["examples_ybr_color.dcm"])
    result = clean_burned_in_text(ds, TextScreen(), Counting())
    assert result.status == BurnedInStatus.REDACTED and result.screened_frames == 30
    assert Counting.calls == result.reads < 30  # the banner is read once, not once per frame


def test_monochrome1_is_blacked_with_its_brightest_value() -> None:
    ds = pydicom.dcmread(FILES["RG1_UNCR.dcm"])
    original = ds.pixel_array.copy()
    shown = 255 - display_frames(original[np.newaxis], "MONOCHROME2")[0]  # what the viewer shows
    marked = burn(shown, "SMITH^JOHN 19570312", (200, 200), 60, 255)
    stored = np.where(marked != shown, original.min(), original).astype(original.dtype)  # bright type = low values
    ds.PixelData = stored.tobytes()
    result = clean_burned_in_text(ds, TextScreen(), READER)
    assert result.status == BurnedInStatus.REDACTED and result.regions
    for _, (x0, y0, x1, y1) in result.regions:  # black as the viewer shows MONOCHROME1: the highest value
        assert (ds.pixel_array[y0:y1, x0:x1] == original.max()).all()
    assert readable_lines(ds) == []


def test_unreadable_pixels_are_unverified() -> None:
    ds = pydicom.dcmread(FILES["JPEG-lossy.dcm"])  # 12-bit JPEG extended: no decoder here
    assert clean_burned_in_text(ds, TextScreen(), READER).status == BurnedInStatus.UNVERIFIED


def test_native_greyscale_fast_path_matches_pydicom() -> None:
    """Uncompressed greyscale is read from the bytes directly: the same values and type as pydicom's decoder."""
    compared = 0
    for path in FILES.values():
        try:
            ds = pydicom.dcmread(path)
            expected = ds.pixel_array
        except Exception:  # noqa: BLE001 - not an image, or not decodable: nothing to compare
            continue
        if not str(ds.get("PhotometricInterpretation", "")).startswith("MONOCHROME"):
            continue
        frames, _ = viewer_pixels(ds)
        expected = expected if int(ds.get("NumberOfFrames", 1) or 1) > 1 else expected[np.newaxis]
        assert frames.dtype == expected.dtype and np.array_equal(frames, expected), path.name
        compared += 1
    assert compared >= 60


def test_net_lines_taller_than_annotation_are_anatomy() -> None:
    """Where the screen saw no type, a 'line' the net reads into a whole organ (a phantom's body read as
    '0.0', 272 px tall) is not blacked out; a line of annotation height beside it is."""
    class Scripted:  # reads both on the first call; after the redaction, only the organ is left
        name = "scripted"
        calls = 0

        def read(self, image: np.ndarray) -> list[TextLine]:
            Scripted.calls += 1
            organ = TextLine((70, 160, 470, 432), "0.0", 0.7)
            return [organ, TextLine((24, 24, 180, 40), "DOE JANE", 0.9)] if Scripted.calls == 1 else [organ]

    ds = pydicom.dcmread(FILES["693_UNCR.dcm"])
    result = clean_burned_in_text(ds, TextScreen(), READER, net=Scripted())
    assert result.status == BurnedInStatus.REDACTED and result.net_hits == 1
    tops = {box[1] for _, box in result.regions}
    assert all(y0 < 40 for y0 in tops), result.regions  # only the annotation row, not the organ
