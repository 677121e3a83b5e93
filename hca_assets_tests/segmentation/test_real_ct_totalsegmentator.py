"""Local backend on a real CT against reference organ masks: TotalSegmentator's abdominal test case (Apache-2.0;
the masks are that model's predictions — data/real/PROVENANCE.md). Each floor sits a little below the Dice the
backend reaches today, so a regression fails here; the issue's goals are reported by ``benchmarks/segmentation.py``.
"""

from __future__ import annotations

import hashlib

import nibabel as nib
import numpy as np
import pytest

from hca_assets.evaluation.segmentation import dice
from hca_assets.segmentation.base import Mask, from_canonical, to_canonical
from hca_assets.segmentation.local import LocalSegmenter
from hca_assets_tests.realdata import REAL_DIR

CT = ("totalsegmentator_example_ct_sm.nii.gz", "e50c00b2914e2cac0aaee8e7f3b5f57d44d9f21bfd5c0577271c54c0cb49e9fb")
SEG = ("totalsegmentator_example_seg.nii.gz", "8be652475a4aaae83103a66bfb3345314b1fc06742807a06cf5005f7a7913a2d")
LABELS = {"liver": (5,), "spleen": (1,), "right kidney": (2,), "left kidney": (3,), "lung": (10, 11, 12, 13, 14)}
FLOORS = {"liver": 0.87, "spleen": 0.78, "right kidney": 0.85, "left kidney": 0.78, "lung": 0.90}


def _load(name: str, sha256: str) -> nib.Nifti1Image:
    path = REAL_DIR / name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256, f"{name} differs from the packaged file"
    image = nib.load(path)
    return nib.Nifti1Image(np.asarray(image.dataobj), image.affine)


def _dices(ct: nib.Nifti1Image, seg: nib.Nifti1Image) -> dict[str, float]:
    """Segment ``ct`` as the pipeline does (RAS+ canonical volume, masks mapped back) and score on ``seg``'s grid."""
    assert ct.shape == seg.shape and np.allclose(ct.affine, seg.affine)
    volume, spacing = to_canonical(nib.Nifti1Image(np.asarray(ct.dataobj, dtype=np.float32), ct.affine))
    out = LocalSegmenter().segment(volume, spacing, list(LABELS))
    labels = np.asarray(seg.dataobj)
    scores = {}
    for prompt, values in LABELS.items():
        outcome = out[prompt]
        assert isinstance(outcome, Mask)
        scores[prompt] = dice(from_canonical(outcome.mask, ct), np.isin(labels, values))
    return scores


@pytest.fixture(scope="module")
def case() -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    return _load(*CT), _load(*SEG)


@pytest.fixture(scope="module")
def scores(case: tuple[nib.Nifti1Image, nib.Nifti1Image]) -> dict[str, float]:
    return _dices(*case)


@pytest.mark.parametrize("prompt", list(FLOORS))
def test_real_ct_organ_dice_reaches_its_floor(scores: dict[str, float], prompt: str) -> None:
    assert scores[prompt] >= FLOORS[prompt], scores


def test_real_ct_stored_as_dicom_would_be_scores_the_same(case: tuple[nib.Nifti1Image, nib.Nifti1Image],
                                                            scores: dict[str, float]) -> None:
    """The same CT and masks flipped to L/P voxel order (a DICOM series' LPS grid, affine adjusted): the masks land
    on that grid and every Dice is unchanged."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flipped = []
    for image in case:
        data = np.asarray(image.dataobj)[::-1, ::-1, :]
        shift = np.eye(4)
        shift[:2, 3] = np.array(image.shape[:2]) - 1
        flipped.append(nib.Nifti1Image(np.ascontiguousarray(data), image.affine @ shift @ flip))
    assert nib.aff2axcodes(flipped[0].affine) == ("L", "P", "S")
    assert np.allclose(flipped[0].affine @ [0, 0, 0, 1], case[0].affine @ [*(np.array(case[0].shape[:2]) - 1), 0, 1])
    assert _dices(*flipped) == pytest.approx(scores, abs=1e-12)
