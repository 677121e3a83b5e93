"""Embedding backends behind one small protocol (no Dagster here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hca_assets.config.secrets import MI2, secret
from hca_assets.config.settings import EMBEDDERS
from hca_assets.models.base import Embedder
from hca_assets.models.local import LocalEmbedder

if TYPE_CHECKING:
    from hca_assets.config import Settings

__all__ = ["Embedder", "LocalEmbedder", "embedder_code_version", "get_embedder"]


def get_embedder(settings: Settings, *, url: str = "", key: str = "") -> Embedder:
    """The backend ``settings.embedder`` names: ``local`` (weight-free image statistics, the default),
    ``efficientnet`` (the shipped ImageNet encoder), ``azure`` (MedImageInsight endpoint;
    URL and key default to the ``HCA_MI2_ENDPOINT`` / ``HCA_MI2_KEY`` secrets) or ``onnx`` (``settings.onnx_model``)."""
    name = settings.embedder
    if name == "efficientnet":
        from hca_assets.models.efficientnet import EfficientNetLite0

        return EfficientNetLite0(threads=settings.embed_threads, batch_size=settings.embed_batch)
    if name == "local":
        return LocalEmbedder()
    if name == "azure":
        from hca_assets.models.azure import AzureMedImageInsight
        from hca_assets.models.endpoint import Endpoint

        url, key = url or secret(MI2["url"]), key or secret(MI2["key"])
        if not url or not key:
            raise ValueError(f"the MedImageInsight backend needs an endpoint URL and key ({MI2['url']}, {MI2['key']})")
        endpoint = Endpoint(url, key, deployment=settings.mi2_deployment)
        return AzureMedImageInsight(endpoint, version=settings.mi2_model_version)
    if name == "onnx":
        from pathlib import Path

        from hca_assets.models.onnx import OnnxEmbedder

        return OnnxEmbedder(Path(settings.onnx_model or ""), threads=settings.embed_threads,
                            batch_size=settings.embed_batch)
    raise ValueError(f"unknown embedding backend {name!r}; available: {', '.join(map(repr, EMBEDDERS))}")


def embedder_code_version(settings: Settings) -> str:
    """The code_version of ``settings.embedder``'s embeddings without building it (no endpoint or key needed)."""
    from hca_assets.dicom.pixels import PREPROCESSING_VERSION

    name = settings.embedder
    if name == "efficientnet":
        from hca_assets.models.efficientnet import EfficientNetLite0

        return f"efficientnet@{EfficientNetLite0.shipped_version()}+{PREPROCESSING_VERSION}"
    if name == "local":
        return f"local@{LocalEmbedder.version}+{PREPROCESSING_VERSION}"
    if name == "azure":
        return f"azure-mi2@{settings.mi2_model_version}+{PREPROCESSING_VERSION}"
    if name == "onnx":
        import hashlib
        from pathlib import Path

        model = Path(settings.onnx_model or "")
        digest = hashlib.sha256(model.read_bytes()).hexdigest()[:12] if model.is_file() else "missing"
        return f"onnx@sha256-{digest}+{PREPROCESSING_VERSION}"
    raise ValueError(f"unknown embedding backend {name!r}; available: {', '.join(map(repr, EMBEDDERS))}")
