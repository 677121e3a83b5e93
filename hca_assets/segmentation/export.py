"""Mask files: a NIfTI per structure on the volume's grid and affine, and a BINARY DICOM SEG per series
(highdicom) referencing the source instances, with SNOMED CT segment codes from ``strategies.json`` and the
algorithm's name and version."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from hca_assets.segmentation.strategies import structure

__all__ = ["planar_affine", "planar_grid", "seg_dataset", "volume_to_frames", "write_nifti", "write_seg"]


def write_nifti(mask: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    """Save a 3D mask (uint8 0/1) with the source volume's affine, e.g. ``DIR/<structure>.nii.gz``."""
    if mask.ndim != 3:
        raise ValueError(f"a NIfTI mask must be 3D, got shape {mask.shape}")
    image = nib.Nifti1Image(mask.astype(np.uint8), affine)
    image.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path


def planar_grid(mask: np.ndarray) -> np.ndarray:
    """A projection image's (rows, columns) mask as the one-slice NIfTI grid (column, row, 1) volumes use."""
    if mask.ndim != 2:
        raise ValueError(f"a planar mask must be 2D, got shape {mask.shape}")
    return np.ascontiguousarray(mask.T[:, :, np.newaxis])


def planar_affine(spacing: tuple[float, float] | None) -> np.ndarray:
    """A projection image has no patient geometry: its NIfTI scales (column, row) by the pixel spacing (mm)."""
    row_mm, col_mm = spacing or (1.0, 1.0)
    return np.diag([col_mm, row_mm, 1.0, 1.0])


def volume_to_frames(mask: np.ndarray) -> np.ndarray:
    """A mask on ``build_volume``'s grid (column, row, slice) as frames (slice, row, column) in volume order."""
    return np.ascontiguousarray(mask.transpose(2, 1, 0))


def _code(value: tuple[str, str]) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value[0], "SCT", value[1])


def _description(number: int, prompt: str, algorithm: hd.AlgorithmIdentificationSequence) -> hd.seg.SegmentDescription:
    s = structure(prompt)
    desc = hd.seg.SegmentDescription(
        segment_number=number, segment_label=s.name, segmented_property_category=_code(s.category),
        segmented_property_type=_code(s.type), algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    if s.laterality:
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [_code(s.laterality)]
    return desc


def seg_dataset(source: Sequence[Dataset], masks: Mapping[str, np.ndarray], *, algorithm: str, version: str,
                family: str = "ArtificialIntelligence", series_number: int = 900) -> hd.seg.Segmentation:
    """A BINARY SEG over ``source`` (single-frame instances, in the masks' frame order); ``masks`` maps a prompt
    to a boolean (frames, rows, columns) array. ``family`` names a CID 7162 algorithm family."""
    if not masks:
        raise ValueError("a SEG needs at least one mask")
    prompts = list(masks)
    expected = (len(source), int(source[0].Rows), int(source[0].Columns))
    for p in prompts:
        if masks[p].shape != expected:
            raise ValueError(f"mask `{p}` has shape {masks[p].shape}, the source frames are {expected}")
    stack = np.stack([masks[p].astype(bool) for p in prompts], axis=-1)
    ident = hd.AlgorithmIdentificationSequence(name=algorithm, family=getattr(codes.cid7162, family), version=version)
    seg = hd.seg.Segmentation(
        source_images=list(source), pixel_array=stack, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(i + 1, p, ident) for i, p in enumerate(prompts)],
        series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="hca_assets", manufacturer_model_name=algorithm, software_versions=version,
        device_serial_number="0", series_description=f"Segmentation ({algorithm})",
        omit_empty_frames=bool(stack.any()),
    )
    if "ImageOrientationPatient" not in source[0]:
        # Projection images: highdicom writes Pixel Spacing without Slice Thickness (type 1C, legal) but its own
        # segread refuses that; the sequence is conditional without a frame of reference, so leave it out.
        shared = seg.SharedFunctionalGroupsSequence[0]
        if "PixelMeasuresSequence" in shared:
            del shared.PixelMeasuresSequence
        seg.PatientOrientation = source[0].get("PatientOrientation", "")  # type 2C without a frame of reference
    return seg


def write_seg(source: Sequence[Dataset], masks: Mapping[str, np.ndarray], path: Path, *, algorithm: str, version: str,
              family: str = "ArtificialIntelligence") -> Path:
    """``seg_dataset`` saved to ``path`` (e.g. ``DIR/seg.dcm``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    seg_dataset(source, masks, algorithm=algorithm, version=version, family=family).save_as(path)
    return path
