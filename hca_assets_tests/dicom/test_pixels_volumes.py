"""Windowing, VOI / percentile normalisation, MONOCHROME1, letterboxing; NIfTI geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage as ndi

from hca_assets.dicom.pixels import WINDOWS, Letterbox, Window, choose_window, frames, letterbox, to_uint8
from hca_assets.dicom.volumes import build_volume, slice_positions_ras
from hca_assets_tests.conftest import public_test_files


def test_ct_window_maps_hounsfield_units(small_study: tuple[Path, Path]) -> None:
    ds = pydicom.dcmread(min(small_study[0].rglob("ct/0006.dcm")))
    hu = ds.pixel_array.astype(np.int32) - 1024
    image = to_uint8(ds, ds.pixel_array, WINDOWS["soft_tissue"])
    assert image.dtype == np.uint8
    assert (image[hu <= -160] == 0).all() and (image[hu >= 240] == 255).all()
    assert choose_window("CT", "HEAD").name == "brain" and choose_window("MR", "HEAD") is None
    with pytest.raises(ValueError, match="high > low"):
        Window("bad", 10, 5)


def test_percentiles_monochrome1_and_voi_lut() -> None:
    files = {p.name: p for p in public_test_files()}
    mono1 = pydicom.dcmread(files["MR-SIEMENS-DICOM-WithOverlays.dcm"])
    mono1.PhotometricInterpretation = "MONOCHROME1"
    normal = pydicom.dcmread(files["MR-SIEMENS-DICOM-WithOverlays.dcm"])
    a, b = to_uint8(mono1, mono1.pixel_array, None), to_uint8(normal, normal.pixel_array, None)
    assert np.array_equal(a, 255 - b)  # inverted
    assert np.percentile(b, 99) >= 250 and np.percentile(b, 1) <= 5  # 1st/99th percentile stretch
    voi = pydicom.dcmread(files["vlut_04.dcm"])
    assert "VOILUTSequence" in voi and to_uint8(voi, voi.pixel_array, None).max() == 255
    rgb = pydicom.dcmread(files["SC_rgb_rle_2frame.dcm"])
    stack = frames(rgb)
    assert stack.shape[0] == 2 and to_uint8(rgb, stack[1], None).shape[-1] == 3


def test_a_window_that_shows_nothing_falls_back_to_an_automatic_one() -> None:
    """The issue's real batch: CT converted to stored 0–255 with RescaleIntercept −1024 (HU −1024..−769, all
    below the soft-tissue window) and a MONOCHROME1 CR whose VOI LUT maps its whole range to one value rendered
    as constant frames; a viewer's automatic window shows them. Constant output only from constant values."""
    files = {p.name: p for p in public_test_files()}
    ct = pydicom.dcmread(files["CT_small.dcm"])  # real, pydicom-data (MIT)
    stored = ct.pixel_array.astype(np.float32)
    converted = np.round(255 * (stored - stored.min()) / (stored.max() - stored.min())).astype(np.uint16)
    ct.PixelData, ct.BitsStored, ct.HighBit, ct.PixelRepresentation = converted.tobytes(), 8, 7, 0
    ct.BitsAllocated, ct.RescaleIntercept, ct.RescaleSlope, ct.BodyPartExamined = 16, -1024, 1, "ABDOMEN"
    shown = to_uint8(ct, ct.pixel_array, choose_window("CT", "ABDOMEN"))
    assert shown.min() == 0 and shown.max() == 255 and len(np.unique(shown)) > 100

    cr = pydicom.dcmread(files["vlut_04.dcm"])  # real VOI LUT Sequence, pydicom-data
    cr.PhotometricInterpretation, cr.Modality = "MONOCHROME1", "CR"
    item = cr.VOILUTSequence[0]
    item.LUTDescriptor = [item.LUTDescriptor[0], int(cr.pixel_array.max()) + 1, item.LUTDescriptor[2]]  # all below it
    assert len(np.unique(to_uint8(cr, cr.pixel_array, None))) > 100

    blank = np.full((16, 16), 300, dtype=np.uint16)
    assert np.unique(to_uint8(ct, blank, choose_window("CT", "ABDOMEN"))).size == 1  # truly constant stays so


@pytest.mark.parametrize(("shape", "row_span", "col_span"), [
    ((100, 400), (384, 640), (0, 1024)), ((400, 100), (0, 1024), (384, 640)), ((512, 512), (0, 1024), (0, 1024)),
])
def test_letterbox_preserves_aspect_with_black_padding(shape: tuple[int, int], row_span: tuple[int, int],
                                                       col_span: tuple[int, int]) -> None:
    image = np.full(shape, 200, dtype=np.uint8)
    out = letterbox(image)
    assert out.shape == (1024, 1024)
    rows = np.flatnonzero(out.max(axis=1))
    cols = np.flatnonzero(out.max(axis=0))
    assert (rows[-1] - rows[0] + 1) / (cols[-1] - cols[0] + 1) == pytest.approx(shape[0] / shape[1], rel=0.01)
    assert (rows[0], rows[-1] + 1) == row_span and (cols[0], cols[-1] + 1) == col_span  # centred, black around


def _blobs(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A random mask of blobs a few pixels wide, with single-pixel specks."""
    rng = np.random.default_rng(seed)
    mask = ndi.gaussian_filter(rng.random(shape), 3) > 0.52
    mask[rng.integers(0, shape[0], 20), rng.integers(0, shape[1], 20)] = True
    return mask


@pytest.mark.parametrize("shape", [(512, 512), (256, 512), (100, 400), (768, 600), (1024, 300), (37, 1000), (1024, 1024)])
def test_mask_round_trip_to_the_pixel(shape: tuple[int, int]) -> None:
    box = Letterbox(*shape)
    mask = _blobs(shape, seed=shape[0])
    framed = box.to_frame(mask)
    assert framed.shape == (1024, 1024)
    assert np.array_equal(box.to_source(framed), mask)  # every source pixel, specks included
    top, left = box.offset
    rows, cols = box.inner
    assert not framed[:top].any() and not framed[top + rows:].any() and not framed[:, :left].any()
    assert not framed[:, left + cols:].any()  # nothing in the padding
    # the image and the mask share one geometry: a model that outlines the bright pixels it was shown gives
    # back the source mask (bilinear resampling moves edges by under a pixel; specks may fade)
    image = np.zeros(shape, np.uint8)
    image[mask] = 255
    assert np.mean(box.to_source(box.apply(image) > 127) != mask) < 0.01


def test_padding_is_never_mapped_back_and_downscale_keeps_majority() -> None:
    box = Letterbox(200, 800)  # 256 × 1024 inside rows 384..640
    padding_only = np.zeros((1024, 1024), bool)
    padding_only[:384] = padding_only[640:] = True
    assert not box.to_source(padding_only).any()
    big = Letterbox(2048, 1536)  # a CR: scaled by 1/2
    blocks = np.kron(_blobs((1024, 768), seed=7), np.ones((2, 2), bool))  # structures ≥ 2 px: survive exactly
    assert np.array_equal(big.to_source(big.to_frame(blocks)), blocks)
    fine = _blobs((2048, 1536), seed=8)
    square = np.ones((3, 3), bool)
    edge = ndi.binary_dilation(fine, square) ^ ndi.binary_erosion(fine, square)
    wrong = big.to_source(big.to_frame(fine)) != fine
    assert wrong.any() and not (wrong & ~edge).any()  # 1-px detail is below the frame's resolution: edges only
    with pytest.raises(ValueError, match="expected 1024"):
        box.to_source(np.zeros((512, 512), bool))


def test_nifti_affine_matches_dicom_geometry(small_study: tuple[Path, Path]) -> None:
    slices = [pydicom.dcmread(p) for p in sorted(small_study[0].rglob("ct/*.dcm"))]
    shuffled = slices[::2] + slices[1::2]  # order on disk must not matter
    volume = build_volume(shuffled)
    assert volume.image.shape == (64, 64, len(slices))
    expected = slice_positions_ras(slices)  # files are written feet → head
    placed = np.array([(volume.image.affine @ [0, 0, k, 1])[:3] for k in range(len(slices))])
    assert np.allclose(placed, expected, atol=1e-3)
    assert np.allclose(np.abs(np.diag(volume.image.affine)[:3]), [float(slices[0].PixelSpacing[1]),
                                                                   float(slices[0].PixelSpacing[0]), 2.5])
    data = np.asarray(volume.image.dataobj)
    assert data[:, :, 0].T == pytest.approx(slices[0].pixel_array.astype(np.float32) - 1024)  # HU, i = column
    with pytest.raises(ValueError, match="evenly spaced"):
        build_volume(slices[:3] + slices[5:])
