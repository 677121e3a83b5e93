"""The segmentation backends by name, built from the settings, and the code_version their masks carry (no
Dagster here)."""

from __future__ import annotations

from pathlib import Path

from hca_assets.config import Settings
from hca_assets.config.secrets import MIP, secret
from hca_assets.dicom.pixels import PREPROCESSING_VERSION
from hca_assets.segmentation import BACKENDS
from hca_assets.segmentation.base import Segmenter
from hca_assets.segmentation.strategies import STRATEGIES_VERSION

__all__ = ["BACKENDS", "BackendError", "code_version", "segmenter_code_version", "segmenter_for"]



class BackendError(ValueError):
    """A backend that is unknown, not available, or not configured; the message names what to set."""


def _code_version(name: str, version: str) -> str:
    return f"{name}@{version}+{STRATEGIES_VERSION}+{PREPROCESSING_VERSION}"


def code_version(segmenter: Segmenter) -> str:
    """Backend, its version, the prompt strategies and the preprocessing: a change to any re-segments."""
    return _code_version(segmenter.name, segmenter.version)


def segmenter_code_version(settings: Settings) -> str:
    """The code_version of the configured backend's masks without building it (no endpoint, key or model
    session): equal to ``code_version(segmenter_for(settings.segmenter, settings))``."""
    if settings.segmenter == "azure":
        from hca_assets.segmentation.azure import AzureSegmenter

        return _code_version(AzureSegmenter.name, settings.mip_model_version)
    if settings.segmenter == "onnx":
        from hca_assets.segmentation.onnx import OnnxSegmenter, onnx_version

        model = Path(settings.seg_onnx_model or "")
        labels = Path(settings.seg_onnx_labels) if settings.seg_onnx_labels else None
        return _code_version(OnnxSegmenter.name, onnx_version(model, labels) if settings.seg_onnx_model else "unset")
    from hca_assets.segmentation.local import LocalSegmenter

    return _code_version(LocalSegmenter.name, LocalSegmenter.version)


def segmenter_for(backend: str, settings: Settings | None = None, *, url: str = "", key: str = "") -> Segmenter:
    """The segmenter named ``backend`` configured by ``settings`` (default: from the environment); the azure
    endpoint's URL and key default to ``HCA_MIP_ENDPOINT`` / ``HCA_MIP_KEY``. :class:`BackendError`, naming what
    to set, for one that is unknown or not configured."""
    settings = settings or Settings.from_env()
    if backend == "local":
        from hca_assets.segmentation.local import LocalSegmenter

        return LocalSegmenter()
    if backend == "azure":
        from hca_assets.models.endpoint import Endpoint
        from hca_assets.models.medimageparse import MedImageParseClient
        from hca_assets.segmentation.azure import AzureSegmenter

        url, key = url or secret(MIP["url"]), key or secret(MIP["key"])
        missing = [name for name, value in ((MIP["url"], url), (MIP["key"], key)) if not value]
        if missing:
            raise BackendError(f"backend `azure` needs {' and '.join(missing)} (the MedImageParse endpoint's scoring "
                               "URL and key)")
        client = MedImageParseClient(Endpoint(url, key, deployment=settings.mip_deployment),
                                     version=settings.mip_model_version)
        return AzureSegmenter(client, concurrency=settings.mip_concurrency)
    if backend == "onnx":
        if not settings.seg_onnx_model:
            raise BackendError("backend `onnx` needs HCA_SEG_ONNX_MODEL (a segmentation model file, its label JSON "
                               "beside it or in HCA_SEG_ONNX_LABELS)")
        from hca_assets.segmentation.onnx import OnnxSegmenter

        try:
            return OnnxSegmenter(Path(settings.seg_onnx_model),
                                 Path(settings.seg_onnx_labels) if settings.seg_onnx_labels else None)
        except (OSError, ValueError) as exc:
            raise BackendError(f"backend `onnx`: {exc}") from exc
    raise BackendError(f"unknown backend `{backend}` (one of {', '.join(BACKENDS)})")
