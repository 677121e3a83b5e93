"""Embedding backends behind one small protocol (no Dagster here)."""

from hca_assets.models.base import Embedder
from hca_assets.models.local import LocalEmbedder

__all__ = ["Embedder", "LocalEmbedder", "get_embedder"]


def get_embedder(name: str) -> Embedder:
    """The backend called ``name`` (config: ``HCA_EMBEDDER``)."""
    if name == "local":
        return LocalEmbedder()
    raise ValueError(f"unknown embedding backend {name!r}; available: 'local' (the Azure backend is not built yet)")
