"""Embedding backends behind one small protocol (no Dagster here)."""

from __future__ import annotations

import os

from hca_assets.models.base import Embedder
from hca_assets.models.local import LocalEmbedder

__all__ = ["Embedder", "LocalEmbedder", "embedder_code_version", "get_embedder"]

_VERSION_ENV = "HCA_MI2_MODEL_VERSION"
_ONNX_ENV = "HCA_ONNX_MODEL"


def get_embedder(name: str, *, url: str = "", key: str = "") -> Embedder:
    """The backend called ``name``: ``local`` (weight-free default), ``azure`` (MedImageInsight endpoint;
    URL and key default to ``HCA_MI2_ENDPOINT`` / ``HCA_MI2_KEY``) or ``onnx`` (the model file named by
    ``HCA_ONNX_MODEL``)."""
    if name == "local":
        return LocalEmbedder()
    if name == "azure":
        from hca_assets.models.azure import AzureMedImageInsight
        from hca_assets.models.endpoint import Endpoint

        url, key = url or os.environ.get("HCA_MI2_ENDPOINT", ""), key or os.environ.get("HCA_MI2_KEY", "")
        if not url or not key:
            raise ValueError("the MedImageInsight backend needs an endpoint URL and key (HCA_MI2_ENDPOINT, HCA_MI2_KEY)")
        endpoint = Endpoint(url, key, deployment=os.environ.get("HCA_MI2_DEPLOYMENT") or None)
        return AzureMedImageInsight(endpoint, version=os.environ.get(_VERSION_ENV, "medimageinsight-1"))
    if name == "onnx":
        from pathlib import Path

        from hca_assets.models.onnx import OnnxEmbedder

        return OnnxEmbedder(Path(os.environ.get(_ONNX_ENV, "")))
    raise ValueError(f"unknown embedding backend {name!r}; available: 'local', 'azure', 'onnx'")


def embedder_code_version(name: str) -> str:
    """The code_version of a backend's embeddings without building it (no endpoint or key needed)."""
    from hca_assets.dicom.pixels import PREPROCESSING_VERSION

    if name == "local":
        return f"local@{LocalEmbedder.version}+{PREPROCESSING_VERSION}"
    if name == "azure":
        return f"azure-mi2@{os.environ.get(_VERSION_ENV, 'medimageinsight-1')}+{PREPROCESSING_VERSION}"
    if name == "onnx":
        import hashlib
        from pathlib import Path

        model = Path(os.environ.get(_ONNX_ENV, ""))
        digest = hashlib.sha256(model.read_bytes()).hexdigest()[:12] if model.is_file() else "missing"
        return f"onnx@sha256-{digest}+{PREPROCESSING_VERSION}"
    raise ValueError(f"unknown embedding backend {name!r}; available: 'local', 'azure', 'onnx'")
