"""MedImageInsight on an Azure AI Foundry online endpoint: the request/response mapping of the published
contract (rows ``[png_b64, text]``, features per row, either reply shape) in batches, over the shared
transport in ``endpoint.py`` (retries, breaker, errors).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from hca_assets.models.base import l2_normalise
from hca_assets.models.endpoint import ContractError, Endpoint, reply_rows

__all__ = ["AzureMedImageInsight"]

DIM = 1024


def _png_b64(image: np.ndarray, size: int) -> str:
    pil = Image.fromarray(np.asarray(image))
    if size and max(pil.size) != size:
        pil = pil.resize((size, size), Image.Resampling.BILINEAR)  # the service works at 512² anyway
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _features(reply: object, key: str, n: int) -> np.ndarray:
    """``image_features`` / ``text_features`` of ``n`` rows: a list of row objects or one bare object; nested
    ``[[…]]`` or flat vectors. A row without them is a contract error (e.g. an empty text query)."""
    vectors: list[np.ndarray] = []
    for i, row in enumerate(reply_rows(reply)):
        if key not in row:
            raise ContractError(f"reply row {i} has no {key!r}")
        value = np.asarray(row[key], dtype=np.float32)
        vectors.extend(value if value.ndim == 2 else [np.squeeze(value)])
    if not all(v.shape == (DIM,) for v in vectors) or len(vectors) != n:
        shapes = sorted({tuple(v.shape) for v in vectors})
        raise ContractError(f"expected {n} vectors of dimension {DIM}, got {len(vectors)} of shape(s) {shapes}")
    out = np.stack(vectors)
    if not np.isfinite(out).all():
        raise ContractError("reply contains non-finite values")
    return l2_normalise(out)


class AzureMedImageInsight:
    """MedImageInsight embeddings (image and text in one 1024-d space)."""

    name = "azure-mi2"
    dim = DIM
    supports_text = True

    def __init__(self, endpoint: Endpoint, *, version: str = "medimageinsight-1", batch_size: int = 16,
                 image_size: int = 512) -> None:
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        self.endpoint, self.version, self.batch_size, self.image_size = endpoint, version, batch_size, image_size

    def __repr__(self) -> str:  # never shows the key
        return f"AzureMedImageInsight({self.endpoint!r}, version={self.version!r})"

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self._batched([[_png_b64(i, self.image_size), ""] for i in images], "image_features")

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return self._batched([["", t] for t in texts], "text_features")

    def scaling_factor(self, text: str) -> float:
        """The model's logit scale (zero-shot logits are ``exp(scaling_factor) · (image · text)``), asked with ``text``."""
        rows = reply_rows(self.endpoint.score([["", text]], {"get_scaling_factor": True}))
        value = rows[0].get("scaling_factor") if len(rows) == 1 else None
        if not isinstance(value, int | float) or not np.isfinite(value):
            raise ContractError("reply has no finite scaling_factor")
        return float(value)

    def _batched(self, rows: list[list[str]], key: str) -> np.ndarray:
        parts = [_features(self.endpoint.score(batch, {"get_scaling_factor": True}), key, len(batch))
                 for batch in (rows[i:i + self.batch_size] for i in range(0, len(rows), self.batch_size))]
        return np.concatenate(parts) if parts else np.zeros((0, DIM), np.float32)
