"""Rendering a batch: the PNG encoder is lossless, every file is read once, volumes equal build_volume's."""

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from hca_assets.dicom.pixels import display_frames, letterbox
from hca_assets.dicom.volumes import build_volume
from hca_assets.stages import images as images_run
from hca_assets.stages.images import encode_png, render_batch


@pytest.mark.parametrize("shape", [(7, 13), (1, 1), (64, 48, 3), (1024, 1024)])
def test_png_encoder_is_lossless(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    image[: shape[0] // 2] = 0  # runs of black, as letterbox padding makes
    decoded = Image.open(io.BytesIO(encode_png(image)))
    assert decoded.mode == ("L" if len(shape) == 2 else "RGB")
    assert np.array_equal(np.asarray(decoded), image)


@pytest.mark.parametrize("image", [np.zeros((4, 4), np.uint16), np.zeros((4, 4, 4), np.uint8), np.zeros(4, np.uint8)])
def test_png_encoder_refuses_what_it_cannot_encode(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="cannot encode"):
        encode_png(image)


def test_batch_reads_each_file_once_and_writes_the_same_pixels(small_study: tuple[Path, Path], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = small_study[0]
    files = sorted(p for p in root.rglob("*.dcm"))
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    rows = [{"sop_instance_uid": str(ds.SOPInstanceUID), "series_instance_uid": str(ds.SeriesInstanceUID),
             "study_instance_uid": str(ds.StudyInstanceUID), "patient_pseudonym": "PSN1", "modality": str(ds.Modality),
             "path": str(p.relative_to(root))} for p, ds in zip(files, headers, strict=True)]
    reads: list[str] = []
    real_read = pydicom.dcmread
    monkeypatch.setattr(images_run.pydicom, "dcmread", lambda path, **kw: reads.append(str(path)) or real_read(path, **kw))

    out = render_batch("b1", rows, root, tmp_path / "images")  # one process: every read is counted here

    monkeypatch.undo()
    assert sorted(reads) == sorted(str(p) for p in files)  # each file once, the volumes included
    assert out.failed == [] and out.images.num_rows == len(files)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["b1"]  # no scratch left behind
    volume_series = {"CT", "MR"}
    assert sorted(out.volumes.column("modality").to_pylist()) == sorted(volume_series)
    for v in out.volumes.to_pylist():
        slices = [pydicom.dcmread(p) for p, ds in zip(files, headers, strict=True)
                  if str(ds.SeriesInstanceUID) == v["series_instance_uid"]]
        expected = build_volume(slices).image
        written = nib.load(tmp_path / "images" / v["path"])
        assert np.array_equal(np.asarray(written.dataobj), np.asarray(expected.dataobj))
        assert np.allclose(written.affine, expected.affine) and v["slices"] == len(slices)
    for r in out.images.to_pylist():  # every PNG is the shared pipeline's frame, letterboxed
        ds = pydicom.dcmread(root / next(row["path"] for row in rows if row["sop_instance_uid"] == r["sop_instance_uid"]))
        frame = list(display_frames(ds)[1])[r["frame"]]
        assert np.array_equal(np.asarray(Image.open(tmp_path / "images" / r["path"])), letterbox(frame))
