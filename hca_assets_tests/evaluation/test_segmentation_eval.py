"""Segmentation evaluation core: the generator's truth brought onto the mask grid (an oracle scores Dice 1.0
through the real ingest → de-identification → images → segmentation route), spacing order, reference masks."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy import ndimage as ndi

from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.images import images
from hca_assets.assets.ingest import raw_dicom
from hca_assets.config import Settings
from hca_assets.evaluation.segmentation import dice, hd95, score
from hca_assets.evaluation.segmentation_truth import evaluate_segmentations, present_dice, truth_on_grid
from hca_assets.lake import read_table
from hca_assets.lake.schemas import DEID_CROSSWALK, DEID_INSTANCES, IMAGES, VOLUMES
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import PseudonymKey, SettingsResource
from hca_assets.segmentation.base import UNSUPPORTED, Mask, Outcome
from hca_assets.sources.claims import claim
from hca_assets.stages.segmentation import segment_batch
from hca_assets.synthetic import generate
from hca_assets_tests.conftest import SMALL

# each truth mask of the CT phantom is one bit of the stored pixel value, so an oracle can read them all back
BITS = {"lung_left": 1, "lung_right": 2, "liver": 4, "spleen": 8, "kidney_left": 16, "kidney_right": 32, "lesion": 64}
PROMPT_BITS = {"lung": 1 | 2, "liver": 4, "spleen": 8, "left kidney": 16, "right kidney": 32, "lesion": 64}


class Oracle:
    """Reads the truth bits back from the RAS+ volume it is given: right exactly when the orientation is."""

    name, version = "oracle", "1"

    def segment(self, volume: np.ndarray, spacing_mm: Sequence[float], prompts: Sequence[str]) -> dict[str, Outcome]:
        code = np.rint(volume + 1024).astype(np.int64)
        return {p: Mask((code & PROMPT_BITS[p]) != 0) if p in PROMPT_BITS and volume.ndim == 3 else UNSUPPORTED
                for p in prompts}


def _box(shape: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return m


def test_truth_goes_onto_the_nifti_grid_in_volume_slice_order() -> None:
    masks = {"a": np.zeros((3, 4, 5), dtype=bool), "b": np.zeros((3, 4, 5), dtype=bool)}
    masks["a"][0, 1, 2] = True  # generator slice 0, row 1, column 2
    masks["b"][2, 3, 4] = True
    grid = truth_on_grid(masks, ("a", "b", "not drawn"), slice_order=[2, 1, 0])  # the volume stacks them reversed
    assert grid.shape == (5, 4, 3)  # column, row, slice
    assert sorted(zip(*np.nonzero(grid), strict=True)) == [(2, 1, 2), (4, 3, 0)]
    assert not truth_on_grid(masks, ("not drawn",), [0, 1, 2]).any()
    with pytest.raises(ValueError):
        truth_on_grid({"a": np.zeros((4, 5), dtype=bool)}, ("a",), [0])


def test_hd95_follows_the_grid_axes_spacing() -> None:
    spacing = (0.7, 0.7, 2.5)  # column, row, slice: in-plane pixels and thick slices
    truth = _box((20, 20, 12), (5, 5, 3), (15, 15, 9))
    one_slice = score(np.roll(truth, 1, axis=2), truth, spacing, "liver")
    one_column = score(np.roll(truth, 1, axis=0), truth, spacing, "liver")
    assert one_slice.hd95_mm == pytest.approx(2.5) and one_column.hd95_mm == pytest.approx(0.7)
    assert one_slice.dice == pytest.approx(5 / 6) and one_slice.truth_present


def _encode_truth(landing: Path, truth_dir: Path) -> None:
    """Rewrite every generated CT slice so its stored value is the bit pattern of the truth masks at that pixel."""
    for row in map(json.loads, (truth_dir / "instances.jsonl").read_text().splitlines()):
        if row["kind"] != "ct":
            continue
        with np.load(truth_dir / row["mask_file"]) as npz:
            code = sum(npz[name][row["slice_index"]].astype(np.uint16) * bit for name, bit in BITS.items()
                       if name in npz.files)
        ds = pydicom.dcmread(landing / row["path"])
        ds.PixelData = np.ascontiguousarray(code.astype(np.uint16)).tobytes()
        ds.save_as(landing / row["path"])


def test_oracle_scores_dice_one_and_reference_masks_need_the_same_grid(settings: Settings, tmp_path: Path) -> None:
    settings = dataclasses.replace(settings, ocr_mode="off", max_constant_fraction=1.0)  # slices outside the organs are 0
    truth_dir = Path(settings.truth_file).parent
    generate(Path(settings.landing), truth_dir, dataclasses.replace(SMALL, lesion_rate=1.0))
    _encode_truth(Path(settings.landing), truth_dir)
    batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
        assert dg.materialize([raw_dicom, deid_staged, deid_dicom, images], instance=instance, partition_key=batch.key,
                              resources={"storage": SettingsResource.from_settings(settings), "pseudonym_key": PseudonymKey()}
                              ).success
    volumes = read_table(settings.table_uri("volumes"), schema=VOLUMES).to_pylist()
    instances = read_table(settings.table_uri("deid_instances"), schema=DEID_INSTANCES).to_pylist()
    crosswalk = read_table(settings.table_uri("deid_crosswalk", restricted=True), schema=DEID_CROSSWALK).to_pylist()
    body_parts = {r["series_instance_uid"]: r["body_part"] for r in
                  read_table(settings.table_uri("images"), schema=IMAGES).to_pylist()}
    seg_root = Path(settings.segmentations)
    out = segment_batch(batch.key, [v for v in volumes if v["modality"] == "CT"], instances, body_parts,
                        Path(settings.deid), Path(settings.images), seg_root, Oracle())
    rows = out.rows.to_pylist()
    assert not out.failed and {r["structure"] for r in rows if r["mask_path"]} >= {"lung", "liver", "kidney_right"}

    # reference masks: one shifted by a slice (scored), one off the grid by 1 mm (skipped), one of another shape
    by_structure = {r["structure"]: r for r in rows if r["mask_path"]}
    series = by_structure["liver"]["series_instance_uid"]
    ref_dir = tmp_path / "reference"
    liver = nib.load(seg_root / by_structure["liver"]["mask_path"])
    liver_pred = np.asanyarray(liver.dataobj) > 0
    shifted = np.roll(liver_pred, 1, axis=2)
    (ref_dir / series).mkdir(parents=True)
    nib.save(nib.Nifti1Image(shifted.astype(np.uint8), liver.affine), ref_dir / series / "liver.nii.gz")
    moved = liver.affine.copy()
    moved[0, 3] += 1.0
    nib.save(nib.Nifti1Image(liver_pred.astype(np.uint8), moved), ref_dir / series / "kidney_left.nii.gz")
    nib.save(nib.Nifti1Image(liver_pred[:, :, :-1].astype(np.uint8), liver.affine), ref_dir / series / "spleen.nii.gz")

    result = evaluate_segmentations(rows, instances, crosswalk, seg_root=seg_root, deid_root=Path(settings.deid),
                                    truth_dir=truth_dir, reference_dir=ref_dir)
    truth_scores = [s for _, s in result.scores if s.reference == "synthetic_truth"]
    assert {s.structure for s in truth_scores} == {r["structure"] for r in rows if r["mask_path"]}
    assert all(s.dice == 1.0 and s.iou == 1.0 and s.hd95_mm == 0.0 for s in truth_scores), truth_scores
    assert set(present_dice(result.scores)) >= {"lung", "liver", "spleen", "kidney_left", "kidney_right", "lesion"}
    for structure in ("kidney_right", "lesion"):  # asymmetric along every axis: a flipped truth could not score 1.0
        pred = np.asanyarray(nib.load(seg_root / by_structure[structure]["mask_path"]).dataobj) > 0
        assert all(dice(pred, np.flip(pred, axis)) < 0.9 for axis in range(3)), structure

    refs = [s for _, s in result.scores if s.reference == "reference"]
    assert [(s.structure, s.dice) for s in refs] == [("liver", pytest.approx(dice(liver_pred, shifted)))]
    assert refs[0].dice < 1.0 and refs[0].hd95_mm is not None and refs[0].hd95_mm > 0
    assert sorted((s, n) for s, n, _ in result.skipped) == [(series, "kidney_left"), (series, "spleen")]
    assert all("grid" in reason for _, _, reason in result.skipped)
    original = {str(r["original"]) for r in crosswalk}
    assert not [reason for *_, reason in result.skipped if any(uid in reason for uid in original)]


def test_hd95_on_the_cropped_box_equals_the_whole_array() -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        a, b = np.zeros((40, 40, 16), dtype=bool), np.zeros((40, 40, 16), dtype=bool)
        a[5:30, 0:20, 2:12] = ndi.binary_dilation(rng.random((25, 20, 10)) > 0.97, iterations=2)
        b[8:34, 0:22, 3:13] = ndi.binary_dilation(rng.random((26, 22, 10)) > 0.97, iterations=2)
        b[10:20, 0, 5:8] = True  # on the array's border: its surface there must stay surface
        assert a.any() and b.any()
        sa, sb = (m & ~ndi.binary_erosion(m, ndi.generate_binary_structure(3, 1), border_value=0) for m in (a, b))
        spacing = (0.8, 1.1, 3.0)
        whole = max(np.percentile(ndi.distance_transform_edt(~sb, sampling=spacing)[sa], 95),
                    np.percentile(ndi.distance_transform_edt(~sa, sampling=spacing)[sb], 95))
        assert hd95(a, b, spacing) == pytest.approx(whole)
