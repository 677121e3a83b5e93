"""The azure (MedImageParse) segmenter against the strict local stub: masks back on the SOURCE grid to the pixel
(non-square planar image, small CT volume in radiological display), CT windows per prompt, one request per
slice and window, unknown prompts unsupported, endpoint faults retried or reported as one PHI-free failure;
`hca segment --backend azure`."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hca_assets.cli import main
from hca_assets.config import Settings
from hca_assets.models.endpoint import Endpoint
from hca_assets.models.medimageparse import MedImageParseClient
from hca_assets.segmentation.azure import AzureSegmenter, mip_target
from hca_assets.segmentation.backends import BackendError, code_version, segmenter_code_version, segmenter_for
from hca_assets.segmentation.base import UNSUPPORTED, BackendFailure, Mask
from hca_assets_tests.builders import assert_one_line_user_error
from hca_assets_tests.stubs import MipStub, expected_mask

X, Y, Z = 64, 32, 3  # RAS+ volume: 64 voxels right-left, 32 anterior-posterior, 3 axial slices


class ImageStub(MipStub):
    """Records every image it is sent; with ``threshold`` its masks are the image's pixels above it, so a mask
    that comes back tells where (and from which slice) the pixels went."""

    def __init__(self, threshold: int | None = None) -> None:
        super().__init__()
        self.threshold, self.images = threshold, []

    def answer(self, rows: list[list[object]], fault: str | None) -> list[dict[str, object]]:
        grey = [np.asarray(Image.open(io.BytesIO(base64.b64decode(str(image)))).convert("L")) for image, _ in rows]
        with self._lock:
            self.images += [(str(text), g) for (_, text), g in zip(rows, grey, strict=True)]
        if self.threshold is None:
            return super().answer(rows, fault)
        out = []
        for (_, text), g in zip(rows, grey, strict=True):
            n = len(str(text).split("&"))
            masks = np.repeat(((g > self.threshold) * 255).astype(np.uint8)[np.newaxis], n, axis=0)
            out.append({"image_features": json.dumps({"data": base64.b64encode(masks.tobytes()).decode(),
                                                      "shape": list(masks.shape), "dtype": "uint8"})})
        return out


@pytest.fixture
def stub():  # type: ignore[no-untyped-def]
    with ImageStub() as server:
        yield server


def segmenter(stub: MipStub, concurrency: int = 2) -> AzureSegmenter:
    endpoint = Endpoint(stub.url, stub.key, timeout=5.0, attempts=4, max_wait=0.02)
    return AzureSegmenter(MedImageParseClient(endpoint), concurrency=concurrency)


def ct_volume() -> np.ndarray:
    """Air, a bright block at the patient's right-anterior corner (x high, y high), a lung-density patch."""
    hu = np.full((X, Y, Z), -1000.0, np.float32)
    hu[X - 8:, Y - 4:, :] = 200.0
    hu[8:16, 4:8, :] = -600.0
    return hu


def on_source(prompt: str, top: int, scale: int, rows: int, cols: int) -> np.ndarray:
    """The stub's 1024² mask read at the centre of each source pixel of an image placed at row ``top`` with
    an integer ``scale``: what a correct client returns on the source grid."""
    frame = expected_mask(prompt)
    r = top + np.arange(rows) * scale + scale // 2
    c = np.arange(cols) * scale + scale // 2
    return frame[np.ix_(r, c)]


def test_non_square_planar_image_masks_on_the_source_grid_to_the_pixel(stub: ImageStub) -> None:
    image = np.random.default_rng(1).normal(100, 20, (256, 512)).astype(np.float32)  # rows × columns
    out = segmenter(stub).segment(image, (0.5, 0.5), ["lung", "heart", "spleen"])
    assert out["spleen"] is UNSUPPORTED  # MedImageParse knows no spleen on X-ray
    for prompt in ("lung", "heart"):
        mask = out[prompt]
        assert isinstance(mask, Mask) and mask.confidence is None and mask.mask.shape == (256, 512)
        want = on_source(prompt, top=256, scale=2, rows=256, cols=512)  # 512 → 1024: ×2, 256 rows of padding on top
        assert want.any() and not want.all() and np.array_equal(mask.mask, want)
    assert stub.texts == ["lung & heart"]  # all prompts of the image in one request


def test_ct_volume_slices_in_radiological_view_windowed_per_prompt(stub: ImageStub) -> None:
    out = segmenter(stub).segment(ct_volume(), (0.7, 0.7, 2.5), ["liver", "lung", "lesion", "edema"])
    assert out["edema"] is UNSUPPORTED  # a brain MR target: not on CT
    for prompt, sent in (("liver", "liver"), ("lung", "lung"), ("lesion", "liver tumor")):
        mask = out[prompt]
        assert isinstance(mask, Mask) and mask.mask.shape == (X, Y, Z)
        display = on_source(sent, top=256, scale=16, rows=Y, cols=X)  # 64 columns → 1024: ×16
        want = np.repeat(np.flip(display.T, (0, 1))[..., np.newaxis], Z, axis=2)  # row 0 anterior, column 0 right
        assert want.any() and not want.all() and np.array_equal(mask.mask, want)
    assert sorted(stub.texts) == ["liver & liver tumor"] * Z + ["lung"] * Z  # per slice: one request per window
    images = dict(stub.images)  # every slice of this volume looks alike
    soft, lung = images["liver & liver tumor"], images["lung"]
    assert (soft[260, 4], lung[260, 4]) == (230, 153)  # the 200 HU marker, top left: 360/400 and 1200/2000 of 255
    assert soft[760, 4] == 0 and soft[260, 1019] == 0  # posterior-right and anterior-left are air
    patch = (256 + 16 * (Y - 1 - 5) + 8, 16 * (X - 1 - 12) + 8)  # the -600 HU patch at x=12, y=5
    assert soft[patch] == 0 and lung[patch] == round(400 / 2000 * 255)  # soft tissue -160..240, lung -1000..1000


def test_masks_follow_each_slice_back_onto_the_ras_grid() -> None:
    hu = np.where(np.random.default_rng(2).random((X, Y, Z)) < 0.4, 200.0, -1000.0).astype(np.float32)
    with ImageStub(threshold=128) as stub:
        out = segmenter(stub, concurrency=3).segment(hu, (1.0, 1.0, 1.0), ["liver", "lung"])
    assert stub.requests == 2 * Z
    for prompt in ("liver", "lung"):  # 200 HU is above the threshold in both windows, air below
        assert np.array_equal(out[prompt].mask, hu > 0)  # type: ignore[union-attr]


def test_mr_volume_uses_mr_targets() -> None:
    mr = np.random.default_rng(3).gamma(2.0, 100.0, (X, Y, Z)).astype(np.float32)
    with ImageStub() as stub:
        out = segmenter(stub).segment(mr, (1.0, 1.0, 1.0), ["tumor core", "lung", "enhancing tumor"])
    assert out["lung"] is UNSUPPORTED and isinstance(out["tumor core"], Mask)
    assert stub.texts == ["brain tumor core & enhancing tumor"] * Z
    assert mip_target("tumor core", "MRI") == "brain tumor core" and mip_target("heart", "CT") is None


def test_transient_faults_are_retried(stub: ImageStub) -> None:
    stub.faults = ["503", "429"]
    out = segmenter(stub, concurrency=1).segment(np.arange(64 * 64, dtype=np.float32).reshape(64, 64), (1, 1),
                                                 ["lung"])
    assert stub.requests == 3 and np.array_equal(out["lung"].mask,  # type: ignore[union-attr]
                                                  on_source("lung", top=0, scale=16, rows=64, cols=64))


@pytest.mark.parametrize(("fault", "message"), [("424", r"slice \d of 3: endpoint answered HTTP 424 .*model-error"),
                                                ("wrong_dim", r"slice \d of 3: expected uint8 masks of shape")])
def test_failures_are_one_phi_free_error(stub: ImageStub, fault: str, message: str) -> None:
    stub.faults = [fault]
    with pytest.raises(BackendFailure, match=message) as caught:
        segmenter(stub, concurrency=1).segment(ct_volume(), (1.0, 1.0, 1.0), ["liver"])
    assert "liver" not in str(caught.value)  # the stub echoes the prompt in its error body: never repeated
    assert stub.requests == 1  # neither is retried, and the remaining slices are not sent


def test_backend_choice_and_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HCA_MIP_ENDPOINT", raising=False)
    monkeypatch.delenv("HCA_MIP_KEY", raising=False)
    settings = Settings(data_dir="x", segmenter="azure", mip_model_version="mip-2025-11", mip_concurrency=3)
    with pytest.raises(BackendError, match="HCA_MIP_ENDPOINT and HCA_MIP_KEY"):
        segmenter_for("azure", settings)
    with pytest.raises(BackendError, match="needs HCA_MIP_KEY "):
        segmenter_for("azure", settings, url="http://127.0.0.1:9/score")
    built = segmenter_for("azure", settings, url="http://127.0.0.1:9/score", key="secret-key")
    assert isinstance(built, AzureSegmenter) and built.concurrency == 3 and "secret-key" not in repr(built)
    assert code_version(built) == segmenter_code_version(settings) == "azure-mip@mip-2025-11+prompts-1+pre-2"
    with pytest.raises(ValueError, match="`segmenter` must be one of local, azure, onnx"):
        Settings(data_dir="x", segmenter="gpu")


def test_cli_segments_a_nifti_volume_through_the_stub(stub: ImageStub, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    nib.save(nib.Nifti1Image(ct_volume(), np.diag([0.8, 0.8, 2.0, 1.0])), tmp_path / "ct.nii.gz")
    run = lambda out: CliRunner().invoke(main, ["segment", str(tmp_path / "ct.nii.gz"), "--prompt", "lung",  # noqa: E731
                                                "--out", str(tmp_path / out), "--backend", "azure"])
    monkeypatch.delenv("HCA_MIP_ENDPOINT", raising=False)
    unconfigured = run("none")
    assert_one_line_user_error(unconfigured)
    assert "HCA_MIP_ENDPOINT" in unconfigured.stderr and not (tmp_path / "none").exists()
    monkeypatch.setenv("HCA_MIP_ENDPOINT", stub.url)
    monkeypatch.setenv("HCA_MIP_KEY", stub.key)
    result = run("out")
    assert result.exit_code == 0, result.output
    mask = np.asarray(nib.load(tmp_path / "out" / "lung.nii.gz").dataobj).astype(bool)
    display = on_source("lung", top=256, scale=16, rows=Y, cols=X)
    assert np.array_equal(mask, np.repeat(np.flip(display.T, (0, 1))[..., np.newaxis], Z, axis=2))
    assert f"{mask.sum() * 0.8 * 0.8 * 2.0 / 1000:10.1f} mL" in result.stdout
    stub.faults = ["424"]
    failed = run("failed")
    assert_one_line_user_error(failed)
    assert "HTTP 424" in failed.stderr and not (tmp_path / "failed" / "lung.nii.gz").exists()
