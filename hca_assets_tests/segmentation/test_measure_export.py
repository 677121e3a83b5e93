"""Measurements against analytic sizes; NIfTI and DICOM SEG written from a real generated series read back."""

from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from hca_assets.dicom.volumes import build_volume
from hca_assets.segmentation.base import Mask, from_canonical, to_canonical
from hca_assets.segmentation.export import volume_to_frames, write_nifti, write_seg
from hca_assets.segmentation.local import LocalSegmenter
from hca_assets.segmentation.measure import measure
from hca_assets.synthetic import GeneratorOptions, generate


def test_box_volume_is_exact_and_anisotropic_spacing_counts() -> None:
    mask = np.zeros((30, 40, 12), dtype=bool)
    mask[5:15, 10:30, 2:7] = True  # 10 × 20 × 5 voxels
    m = measure(mask, (0.5, 0.8, 2.0))
    assert (m.voxels, m.area_mm2) == (1000, None)
    assert m.volume_ml == pytest.approx(10 * 0.5 * 20 * 0.8 * 5 * 2.0 / 1000)


def test_sphere_and_disc_match_their_formulas() -> None:
    spacing = (0.4, 0.4, 0.8)
    axes = [np.arange(n) * s for n, s in zip((101, 101, 51), spacing, strict=True)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    sphere = (x - 20) ** 2 + (y - 20) ** 2 + (z - 20) ** 2 <= 15.0**2
    assert measure(sphere, spacing).volume_ml == pytest.approx(4 / 3 * np.pi * 15.0**3 / 1000, rel=0.01)
    yy, xx = np.mgrid[0:400, 0:400] * 0.25
    disc = (yy - 50) ** 2 + (xx - 50) ** 2 <= 30.0**2
    m = measure(disc, (0.25, 0.25))
    assert m.volume_ml is None and m.area_mm2 == pytest.approx(np.pi * 30.0**2, rel=0.005)
    assert measure(disc, None).area_mm2 is None
    with pytest.raises(ValueError):
        measure(disc, (1.0, 1.0, 1.0))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("seg_study")
    generate(root / "dicom", root / "truth", GeneratorOptions(patients=1, seed=3, ct_slices=16, ct_size=128,
                                                               cxr_size=256, mr_slices=8, mr_size=64, lesion_rate=0.0))
    return root / "dicom", root / "truth"


def test_ct_series_to_nifti_and_seg_that_reads_back(study: tuple[Path, Path], tmp_path: Path) -> None:
    dicom, truth = study
    slices = [pydicom.dcmread(f) for f in sorted(dicom.glob("*/ct/*.dcm"))]
    volume = build_volume(slices)
    data, spacing = to_canonical(volume.image)
    prompts = ["liver", "right kidney", "lung"]
    out = LocalSegmenter().segment(data, spacing, prompts)
    grid = {p: from_canonical(o.mask, volume.image) for p, o in out.items() if isinstance(o, Mask)}
    assert set(grid) == set(prompts) and all(m.shape == volume.image.shape for m in grid.values())

    nii = nib.load(write_nifti(grid["liver"], volume.image.affine, tmp_path / "liver.nii.gz"))
    assert np.allclose(nii.affine, volume.image.affine)
    assert np.array_equal(np.asarray(nii.dataobj).astype(bool), grid["liver"])

    by_uid = {str(ds.SOPInstanceUID): ds for ds in slices}
    source = [by_uid[u] for u in volume.sop_instance_uids]
    frames = {p: volume_to_frames(m) for p, m in grid.items()}
    seg = hd.seg.segread(write_seg(source, frames, tmp_path / "seg.dcm", algorithm="local", version="local@test",
                                   family="MorphologicalOperations"))
    assert seg.SegmentationType == "BINARY"
    assert {uid for _, _, uid in seg.get_source_image_uids()} == set(volume.sop_instance_uids)
    labels = [(s.SegmentLabel, s.SegmentedPropertyTypeCodeSequence[0].CodeValue) for s in seg.SegmentSequence]
    assert labels == [("liver", "10200004"), ("kidney_right", "64033007"), ("lung", "39607008")]
    kidney = seg.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0]
    assert kidney.SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning == "Right"
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("local", "local@test")
    pixels = seg.get_pixels_by_source_instance(volume.sop_instance_uids, ignore_spatial_locations=True,
                                               assert_missing_frames_are_empty=True)
    for i, p in enumerate(prompts):
        assert np.array_equal(pixels[..., i].astype(bool), frames[p])
    # frames in instance order line up with the generator's truth (z, y, x): orientation survives the trip
    npz = np.load(truth / "masks" / f"{slices[0].SeriesInstanceUID}.npz")
    liver_truth = npz["liver"]
    assert 2 * (frames["liver"] & liver_truth).sum() / (frames["liver"].sum() + liver_truth.sum()) > 0.9


def test_planar_seg_for_a_chest_xray(study: tuple[Path, Path], tmp_path: Path) -> None:
    ds = pydicom.dcmread(next(study[0].glob("*/cxr/*.dcm")))
    out = LocalSegmenter().segment(ds.pixel_array, [float(v) for v in ds.PixelSpacing], ["lung", "heart"])
    frames = {p: o.mask[np.newaxis] for p, o in out.items() if isinstance(o, Mask)}
    seg = hd.seg.segread(write_seg([ds], frames, tmp_path / "seg.dcm", algorithm="local", version="v"))
    assert [uid for _, _, uid in seg.get_source_image_uids()] == [ds.SOPInstanceUID]
    pixels = seg.get_pixels_by_source_instance([ds.SOPInstanceUID], segment_numbers=[2], assert_missing_frames_are_empty=True)
    assert np.array_equal(pixels[0, ..., 0].astype(bool), frames["heart"][0])
    with pytest.raises(ValueError, match="shape"):
        write_seg([ds], {"lung": frames["lung"][:, :10]}, tmp_path / "bad.dcm", algorithm="local", version="v")
