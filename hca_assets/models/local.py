"""The weight-free default embedder: deterministic image statistics, no model, no network.

What it computes, per 8-bit image (RGB → grey): a 16×16 block-mean thumbnail (layout: which anatomy
is where), a 32-bin histogram of non-background intensities (tissue mix), an 8×8 map of mean gradient
magnitude (edges, texture) and a 16-bin histogram of local contrast (speckle vs smooth). Each block is
centred and scaled to unit length, weighted, concatenated and L2-normalised (368 dimensions).

Limits: it knows nothing about anatomy or pathology. It separates modality and body region well because
they change layout and texture; small lesions barely move global statistics, so lesion retrieval is only
modestly above chance; it is not rotation- or scale-invariant; it has no text embedding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hca_assets.models.base import l2_normalise

__all__ = ["LocalEmbedder"]

_WEIGHTS = (1.0, 0.6, 0.6, 0.4)


def _block_mean(image: np.ndarray, grid: int) -> np.ndarray:
    h, w = image.shape
    return image[: h - h % grid, : w - w % grid].reshape(grid, h // grid, grid, w // grid).mean(axis=(1, 3)).ravel()


def _unit(block: np.ndarray) -> np.ndarray:
    block = block.astype(np.float64) - block.mean()
    norm = np.linalg.norm(block)
    return block / norm if norm > 0 else block


class LocalEmbedder:
    name = "local"
    version = "stats-1"
    dim = 16 * 16 + 32 + 8 * 8 + 16
    supports_text = False

    def features(self, image: np.ndarray) -> np.ndarray:
        grey = image.mean(axis=-1) if image.ndim == 3 else image
        grey = grey.astype(np.float32) / 255.0
        small = _block_mean(grey, 256)  # 256×256 working copy keeps the gradients cheap
        small = small.reshape(256, 256)
        layout = _block_mean(small, 16)
        foreground = small[small > 0.02]
        hist = np.histogram(foreground, bins=32, range=(0, 1))[0] / max(1, foreground.size)
        gy, gx = np.gradient(small)
        magnitude = np.hypot(gx, gy)
        edges = _block_mean(magnitude, 8)
        contrast = np.histogram(magnitude[small > 0.02], bins=16, range=(0, 0.25))[0] / max(1, foreground.size)
        blocks = [_unit(b) * w for b, w in zip((layout, hist, edges, contrast), _WEIGHTS, strict=True)]
        return np.concatenate(blocks)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(np.stack([self.features(np.asarray(i)) for i in images]))

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError("the local backend has no text embedding; use a backend with supports_text")
