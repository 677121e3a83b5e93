"""The embedding protocol: images in, L2-normalised float32 vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hca_assets.dicom.pixels import PREPROCESSING_VERSION


class Embedder(Protocol):
    """``embed(images) -> float32[n, dim]`` (rows L2-normalised); text only where ``supports_text``."""

    name: str
    version: str
    dim: int
    supports_text: bool

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray: ...

    def embed_text(self, texts: Sequence[str]) -> np.ndarray: ...


def code_version(embedder: Embedder) -> str:
    """backend + model version + preprocessing version: what makes embeddings comparable."""
    return f"{embedder.name}@{embedder.version}+{PREPROCESSING_VERSION}"


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def of_version(table: pa.Table, code_version: str) -> pa.Table:
    """The rows of an embeddings table made by one model version."""
    return table.filter(pc.equal(table.column("code_version"), code_version))


def vectors_of(table: pa.Table) -> np.ndarray:
    """The ``vector`` column of an embeddings table as a float32 matrix."""
    if table.num_rows == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(table.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
