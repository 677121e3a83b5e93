"""Local backend against the generator's phantoms (default in-plane size 512, where its goal holds)."""

import numpy as np
import pytest

from hca_assets.segmentation.base import UNSUPPORTED, Mask
from hca_assets.segmentation.local import CT_PROMPTS, CXR_PROMPTS, MR_PROMPTS, LocalSegmenter
from hca_assets.segmentation.strategies import structure
from hca_assets.synthetic.phantoms import Phantom, brain_mr, chest_xray, ct_volume


def _ras(a: np.ndarray) -> np.ndarray:
    """Phantom (z, y, x) with x to the patient's left and y posterior → the protocol's RAS+ (x, y, z)."""
    return np.ascontiguousarray(a.transpose(2, 1, 0)[::-1, ::-1, :])


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return 2 * float((pred & truth).sum()) / float(pred.sum() + truth.sum())


def _dices(ph: Phantom, prompts: tuple[str, ...], spacing: tuple[float, ...], planar: bool = False) -> dict[str, float]:
    volume = ph.pixels if planar else _ras(ph.pixels)
    out = LocalSegmenter().segment(volume, spacing, prompts)
    result = {}
    for p in prompts:
        truth = np.zeros(volume.shape, dtype=bool)
        for name in structure(p).truth:
            truth |= ph.masks[name] if planar else _ras(ph.masks[name])
        assert isinstance(out[p], Mask) and out[p].mask.shape == volume.shape
        result[p] = _dice(out[p].mask, truth)
    return result


@pytest.mark.parametrize("seed", [2])
def test_ct_every_organ_dice_at_least_095(seed: int) -> None:
    ph = ct_volume(np.random.default_rng(seed), slices=48, size=512, lesion=True)
    dices = _dices(ph, CT_PROMPTS, (380 / 512, 380 / 512, 2.5))
    assert min(dices.values()) >= 0.95, dices


def test_ct_without_lesion_gives_an_empty_lesion_mask() -> None:
    ph = ct_volume(np.random.default_rng(5), slices=24, size=128, lesion=False)
    out = LocalSegmenter().segment(_ras(ph.pixels), (380 / 128, 380 / 128, 2.5), ["lesion", "lung"])
    assert isinstance(out["lesion"], Mask) and not out["lesion"].mask.any()
    assert out["lung"].mask.any()  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", [0, 1])
def test_brain_mr_tumour_subregions_dice_at_least_095(seed: int) -> None:
    ph = brain_mr(np.random.default_rng(seed), slices=24, size=256, tumour=True)
    dices = _dices(ph, MR_PROMPTS, (230 / 256, 230 / 256, 5.0))
    assert min(dices.values()) >= 0.95, dices


@pytest.mark.parametrize("seed", [0, 1])
def test_chest_xray_lungs_and_heart_dice_at_least_095(seed: int) -> None:
    ph = chest_xray(np.random.default_rng(seed), size=512, lesion=True)
    dices = _dices(ph, CXR_PROMPTS, (0.7, 0.7), planar=True)
    assert min(dices.values()) >= 0.95, dices


def test_prompts_it_cannot_serve_are_unsupported_never_a_guess() -> None:
    seg = LocalSegmenter()
    ct = _ras(ct_volume(np.random.default_rng(1), slices=16, size=64, lesion=False).pixels)
    out = seg.segment(ct, (6.0, 6.0, 2.5), ["liver", "edema", "pancreas", "heart"])
    assert isinstance(out["liver"], Mask)
    assert out["edema"] is out["pancreas"] is out["heart"] is UNSUPPORTED
    mr = _ras(brain_mr(np.random.default_rng(1), slices=8, size=64, tumour=True).pixels)
    assert seg.segment(mr, (3.6, 3.6, 5.0), ["liver", "lung"]) == {"liver": UNSUPPORTED, "lung": UNSUPPORTED}
    assert seg.segment(ct[:, :, 5], (6.0, 6.0), ["lung"]) == {"lung": UNSUPPORTED}  # a 2D CT slice


@pytest.mark.parametrize("volume", [np.zeros((0, 4, 4)), np.full((8, 8, 8), 100.0), np.zeros((2, 2, 2, 3))])
def test_bad_input_is_unsupported_not_a_crash(volume: np.ndarray) -> None:
    spacing = (1.0,) * volume.ndim
    assert LocalSegmenter().segment(volume, spacing, ["liver", "heart"]) == {"liver": UNSUPPORTED, "heart": UNSUPPORTED}
