"""The onnx segmenter with tiny threshold networks the tests build: labels by argmax or sigmoid, slices in
radiological display (a position-dependent model proves the orientation), a 3D model on the slice stack,
resampling to the model's size and back, exact to the voxel; label JSON errors; `hca segment --backend onnx`."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from hca_assets.cli import main
from hca_assets.config import Settings
from hca_assets.segmentation.backends import BackendError, code_version, segmenter_code_version, segmenter_for
from hca_assets.segmentation.base import UNSUPPORTED, BackendFailure, Mask
from hca_assets.segmentation.onnx import OnnxSegmenter
from hca_assets_tests.builders import assert_one_line_user_error

X, Y, Z = 24, 16, 3  # RAS+ volume; its axial view is 16 rows (anterior → posterior) × 24 columns (right → left)
WINDOW = [-100, 300]  # HU -100 / 100 / 300 normalise to 0 / 0.5 / 1


def _scalar(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, np.float32), name)


def threshold_model(path: Path, spatial: list[int | str], ramp: np.ndarray | None = None) -> Path:
    """Three class scores from the normalised input x: background 0, class 1 = x (+ ramp) - 0.25, class 2 = 2x - 1:
    argmax gives 0 below 0.25, 1 up to 0.75, 2 above (a ramp added to class 1 moves the bounds by position)."""
    nodes = [helper.make_node("Mul", ["x", "zero"], ["c0"]),
             helper.make_node("Add", ["x", "ramp"], ["xr"]) if ramp is not None else helper.make_node("Identity", ["x"], ["xr"]),
             helper.make_node("Sub", ["xr", "quarter"], ["c1"]),
             helper.make_node("Mul", ["x", "two"], ["x2"]), helper.make_node("Sub", ["x2", "one"], ["c2"]),
             helper.make_node("Concat", ["c0", "c1", "c2"], ["y"], axis=1)]
    inits = [_scalar("zero", 0.0), _scalar("quarter", 0.25), _scalar("two", 2.0), _scalar("one", 1.0)]
    if ramp is not None:
        inits.append(numpy_helper.from_array(ramp.astype(np.float32)[np.newaxis, np.newaxis], "ramp"))
    graph = helper.make_graph(nodes, "threshold", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, *spatial])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, *spatial])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def sign_model(path: Path) -> Path:
    """Two logit channels for a 3D input: x and -x (sigmoid > 0.5 where the input is above / below zero)."""
    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["n"]), helper.make_node("Concat", ["x", "n"], ["y"], axis=1)],
                              "sign", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "d", "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, "d", "h", "w"])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def spec(model: Path, **fields: object) -> Path:
    body = {"dims": 2, "input_size": None, "normalise": {"window": WINDOW}, "output": "argmax",
            "labels": {"liver": 1, "spleen": 2}} | fields
    path = model.with_suffix(".json")
    path.write_text(json.dumps(body))
    return path


def display_position() -> np.ndarray:
    """Per RAS+ voxel (x, y): whether (row + 0.5)/16 + (column + 0.5)/24 > 1 in the radiological view, where
    row = 15 - y (row 0 anterior) and column = 23 - x (column 0 the patient's right). Never a tie."""
    x, y = np.meshgrid(np.arange(X), np.arange(Y), indexing="ij")
    return ((Y - 1 - y) + 0.5) / Y + ((X - 1 - x) + 0.5) / X > 1


def test_2d_model_sees_radiological_slices_and_masks_come_back_to_the_voxel(tmp_path: Path) -> None:
    rows, cols = np.meshgrid(np.arange(Y), np.arange(X), indexing="ij")
    ramp = 0.25 * (rows + 0.5) / Y + 0.25 * (cols + 0.5) / X  # in display coordinates: > 0.25 past the anti-diagonal
    model = threshold_model(tmp_path / "m.onnx", [Y, X], ramp)
    spec(model)  # input_size null: the model's fixed 16 × 24
    hu = np.random.default_rng(0).choice(np.array([-100.0, 100.0, 300.0], np.float32), size=(X, Y, Z))
    out = OnnxSegmenter(model).segment(hu, (1.0, 1.0, 2.0), ["liver", "spleen", "lung"])
    assert out["lung"] is UNSUPPORTED  # not in the label JSON
    far = display_position()[..., np.newaxis]
    label = np.where(hu == 100, 1, np.where(hu == -100, np.where(far, 1, 0), np.where(far, 1, 2)))
    for prompt, value in (("liver", 1), ("spleen", 2)):
        mask = out[prompt]
        assert isinstance(mask, Mask) and mask.confidence is None
        assert np.array_equal(mask.mask, label == value) and (label == value).any()


def test_3d_sigmoid_model_with_zscore(tmp_path: Path) -> None:
    model = sign_model(tmp_path / "s.onnx")
    spec(model, dims=3, normalise={"zscore": "volume"}, output="sigmoid", labels={"liver": 0, "lung": 1})
    mr = np.random.default_rng(1).gamma(2.0, 50.0, (X, Y, Z)).astype(np.float32)
    out = OnnxSegmenter(model).segment(mr, (1.0, 1.0, 1.0), ["liver", "lung"])
    assert np.array_equal(out["liver"].mask, mr > mr.mean()) and np.array_equal(out["lung"].mask, mr < mr.mean())  # type: ignore[union-attr]
    assert OnnxSegmenter(model).segment(mr[..., 0], (1.0, 1.0), ["liver"])["liver"] is UNSUPPORTED  # planar, 3D model


def nested() -> np.ndarray:
    """-100 HU outside, 100 HU in a block, 300 HU in a smaller block inside it (0 and 2 never touch)."""
    hu = np.full((X, Y, Z), -100.0, np.float32)
    hu[4:20, 3:13] = 100.0
    hu[8:14, 6:10] = 300.0
    return hu


def test_inputs_resampled_to_the_model_size_and_labels_back(tmp_path: Path) -> None:
    model = threshold_model(tmp_path / "r.onnx", ["h", "w"])
    spec(model, input_size=[2 * Y, 2 * X])
    hu = nested()
    seg = OnnxSegmenter(model)
    out = seg.segment(hu, (1.0, 1.0, 1.0), ["liver", "spleen"])
    assert np.array_equal(out["liver"].mask, hu == 100) and np.array_equal(out["spleen"].mask, hu == 300)  # type: ignore[union-attr]
    planar = seg.segment(hu[:, :, 0].T, (1.0, 1.0), ["spleen"])  # a planar image is used as displayed
    assert np.array_equal(planar["spleen"].mask, hu[:, :, 0].T == 300)  # type: ignore[union-attr]


def test_version_configuration_and_refusals(tmp_path: Path) -> None:
    model = threshold_model(tmp_path / "r.onnx", ["h", "w"])
    labels = spec(model)
    settings = Settings(data_dir="x", segmenter="onnx", seg_onnx_model=str(model))
    built = segmenter_for("onnx", settings)
    version = code_version(built)
    assert version == segmenter_code_version(settings) and version.startswith("onnx@sha256-")
    labels.write_text(labels.read_text().replace('"spleen": 2', '"kidney": 2'))
    assert segmenter_code_version(settings) != version  # a changed label map re-segments
    with pytest.raises(BackendError, match="needs HCA_SEG_ONNX_MODEL"):
        segmenter_for("onnx", Settings(data_dir="x"))
    for fields, message in (({"dims": 4}, "`dims` must be 2 or 3"), ({"output": "softmax2"}, "`output` must be"),
                            ({"labels": {"liver": "one"}}, "`labels` must map"),
                            ({"normalise": {"window": "abdomen"}}, "`normalise` must be"),
                            ({"normalise": {"zscore": [0, 0]}}, "`normalise` must be"),
                            ({"dims": 3}, "says dims 3, but the model's input is")):
        spec(model, **fields)
        with pytest.raises(BackendError, match=message):
            segmenter_for("onnx", settings)
    spec(model, labels={"liver": 5})  # the model has 3 channels: a failure of this input, not a crash
    with pytest.raises(BackendFailure, match=r"returned \[1, 3, 16, 24\] for a \[16, 24\] input; expected \[1, >= 6 channels"):
        segmenter_for("onnx", settings).segment(nested(), (1.0, 1.0, 1.0), ["liver"])
    model.with_suffix(".json").unlink()
    with pytest.raises(BackendError, match="no label JSON"):
        segmenter_for("onnx", settings)


def test_cli_segments_with_the_onnx_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = threshold_model(tmp_path / "r.onnx", ["h", "w"])
    spec(model, input_size=[2 * Y, 2 * X])
    nib.save(nib.Nifti1Image(nested(), np.diag([0.5, 0.5, 2.0, 1.0])), tmp_path / "v.nii.gz")
    run = lambda out: CliRunner().invoke(main, ["segment", str(tmp_path / "v.nii.gz"), "--prompt", "spleen",  # noqa: E731
                                                "--prompt", "liver", "--out", str(tmp_path / out)])
    monkeypatch.setenv("HCA_SEGMENTER", "onnx")  # the configured backend, without --backend
    monkeypatch.delenv("HCA_SEG_ONNX_MODEL", raising=False)
    assert_one_line_user_error(unconfigured := run("none"))
    assert "HCA_SEG_ONNX_MODEL" in unconfigured.stderr
    monkeypatch.setenv("HCA_SEG_ONNX_MODEL", str(model))
    result = run("out")
    assert result.exit_code == 0, result.output
    spleen = np.asarray(nib.load(tmp_path / "out" / "spleen.nii.gz").dataobj).astype(bool)
    assert np.array_equal(spleen, nested() == 300)
    assert f"{spleen.sum() * 0.5 * 0.5 * 2.0 / 1000:10.1f} mL" in result.stdout
    refused = CliRunner().invoke(main, ["segment", str(tmp_path / "v.nii.gz"), "--prompt", "lung", "--out",
                                        str(tmp_path / "lung")])
    assert_one_line_user_error(refused)
    assert "cannot segment `lung`" in refused.stderr
