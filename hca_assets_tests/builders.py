"""What several test modules build: a tiny ONNX embedding model, a small indexed lake, and the assertion that a CLI
failure is one line on stderr with exit code 2."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pyarrow as pa
from onnx import TensorProto, helper, numpy_helper

from hca_assets.config import Settings
from hca_assets.lake import read_table, registry, write_partition
from hca_assets.lake.schemas import EMBEDDINGS, IMAGES, LABELS
from hca_assets.models import LocalEmbedder, embedder_code_version
from hca_assets.search.index import index_embeddings


def assert_one_line_user_error(result: object) -> None:
    """``result``: a CliRunner result or a finished subprocess."""
    exit_code = getattr(result, "exit_code", getattr(result, "returncode", None))
    stdout, stderr = getattr(result, "stdout"), getattr(result, "stderr")  # noqa: B009
    assert exit_code == 2, (stdout, stderr)
    assert stdout == "" and stderr.startswith("Error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr


def tiny_model(path: Path, dim: int = 16, channels: int = 3) -> np.ndarray:
    weights = np.random.default_rng(0).normal(size=(channels * 32 * 32, dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", channels, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", dim])], [numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return weights


def small_index(settings: Settings, n: int = 6) -> np.ndarray:
    """A lake with images, labels and embeddings tables and an exact index over them; returns the images."""
    rng = np.random.default_rng(0)
    images = np.stack([np.clip(rng.normal(40 * i, 30, (1024, 1024)), 0, 255).astype(np.uint8) for i in range(n)])
    vectors = LocalEmbedder().embed(list(images))
    ids = [{"batch": "b1", "sop_instance_uid": f"2.25.{i}", "frame": 0, "series_instance_uid": f"2.25.10{i // 2}",
            "study_instance_uid": "2.25.200", "patient_pseudonym": f"PSN{i % 3}", "modality": "CT"} for i in range(n)]
    version = embedder_code_version(dataclasses.replace(Settings.from_env(), embedder="local"))
    write_partition(registry.EMBEDDINGS.uri(settings), pa.Table.from_pylist(
        [{**r, "vector": v.tolist(), "code_version": version} for r, v in zip(ids, vectors, strict=True)], schema=EMBEDDINGS),
        match={"batch": "b1"}, schema=EMBEDDINGS)
    write_partition(registry.IMAGES.uri(settings), pa.Table.from_pylist(
        [{**r, "body_part": "CHEST", "path": f"b1/{i}.png", "rows": 1024, "columns": 1024, "constant": False,
          "preprocessing_version": "pre-1"} for i, r in enumerate(ids)], schema=IMAGES), match={"batch": "b1"}, schema=IMAGES)
    write_partition(registry.LABELS.uri(settings), pa.Table.from_pylist(
        [{**r, "class_label": "ct_chest", "body_region": "chest", "lesion_present": False, "study_has_lesion": False,
          "source": "test"} for r in ids], schema=LABELS), match={"batch": "b1"}, schema=LABELS)
    index_embeddings(read_table(registry.EMBEDDINGS.uri(settings)), "image", Path(settings.indexes), version)
    return images
