"""The ONNX backend with a tiny model built by the test (a fixed linear projection of a 32×32 thumbnail)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from hca_assets.config import Settings
from hca_assets.models import embedder_code_version, get_embedder
from hca_assets.models.onnx import OnnxEmbedder
from hca_assets_tests.builders import tiny_model


def test_embeds_like_the_model_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tiny_model(tmp_path / "m.onnx")
    e = OnnxEmbedder(tmp_path / "m.onnx", batch_size=2)
    images = [np.full((1024, 1024), v, np.uint8) for v in (0, 100, 200)]
    images[0][:512] = 255
    v = e.embed(images)
    assert v.shape == (3, 16) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    x = np.repeat((np.asarray(images[1][::32, ::32], np.float32) / 255.0)[np.newaxis], 3, axis=0).reshape(1, -1)
    expected = (x @ weights)[0]
    assert np.allclose(v[1], expected / np.linalg.norm(expected), atol=1e-4)  # the model's own arithmetic
    monkeypatch.setenv("HCA_ONNX_MODEL", str(tmp_path / "m.onnx"))
    assert get_embedder(dataclasses.replace(Settings.from_env(), embedder="onnx")).dim == 16
    assert embedder_code_version(dataclasses.replace(Settings.from_env(), embedder="onnx")) == f"onnx@{e.version}+pre-2"
    with pytest.raises(NotImplementedError):
        e.embed_text(["x"])


def test_unusable_models_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="HCA_ONNX_MODEL"):
        OnnxEmbedder(tmp_path / "missing.onnx")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "bad",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "flat.onnx")
    with pytest.raises(ValueError, match="one \\(batch, channels, height, width\\) input"):
        OnnxEmbedder(tmp_path / "flat.onnx")
