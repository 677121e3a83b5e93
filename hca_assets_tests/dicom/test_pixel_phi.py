"""Readable PHI in pixels, judged without the engine: tokens of the original, matched in an OCR reading."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from hca_assets.dicom.burned_in import RapidOcrReader, TextLine
from hca_assets.dicom.pixel_phi import phi_tokens, read_frames, readable_phi


def _original() -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.AccessionNumber = "Doe^Jane^Q", "MRN0048213", "19570312", "A1"
    return ds


def test_tokens_are_name_words_ids_and_birth_date_spellings() -> None:
    names, ids = phi_tokens(_original())
    assert names == {"DOE", "JANE"}  # "Q" is too short to mean anyone
    assert {"MRN0048213", "19570312", "12031957", "03121957", "12MAR1957"} <= ids and "A1" not in ids


def test_a_reading_shows_phi_only_where_a_token_is_read() -> None:
    tokens = phi_tokens(_original())
    line = lambda text, score=0.9: TextLine((0, 0, 10, 10), text, score)  # noqa: E731
    assert readable_phi([line("DOE, JANE  DOB 12/03/1957")], tokens) == 3
    assert readable_phi([line("ID: MRN 0048213")], tokens) == 1
    assert readable_phi([line("DOE JANE", score=0.3)], tokens) == 0  # not read with confidence
    assert readable_phi([line("DOERING"), line("CT ABDOMEN 120 kV")], tokens) == 0  # a short name: whole words only
    assert readable_phi([line("DOEAJANE")], tokens) == 1  # "^" read as a letter: the longer name is still seen


def test_ocr_reads_a_burned_in_name_in_a_small_frame() -> None:
    image = Image.new("L", (256, 256))
    ImageDraw.Draw(image).text((10, 10), "DOE^JANE 1957-03-12", fill=255, font=ImageFont.load_default(size=12))
    ds = Dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 256, 256, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.asarray(image).tobytes()
    ds.file_meta = Dataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    assert readable_phi(read_frames(ds, RapidOcrReader()), phi_tokens(_original())) >= 2
