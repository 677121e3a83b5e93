import dataclasses

import numpy as np
import pytest

from hca_assets.config import Settings
from hca_assets.models import LocalEmbedder, get_embedder
from hca_assets.models.base import code_version


def test_deterministic_normalised_and_discriminative() -> None:
    e = LocalEmbedder()
    rng = np.random.default_rng(0)
    disc = np.zeros((1024, 1024), np.uint8)
    disc[312:712, 312:712] = 180
    speckle = rng.integers(0, 255, (1024, 1024), dtype=np.uint8)
    v = e.embed([disc, disc.copy(), speckle])
    assert v.shape == (3, e.dim) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(v[0], v[1])
    assert v[0] @ v[2] < 0.5
    assert code_version(e) == "local@stats-1+pre-2"
    with pytest.raises(NotImplementedError):
        e.embed_text(["liver"])
    with pytest.raises(ValueError, match="`embedder` must be one of efficientnet, local, azure, onnx"):
        get_embedder(dataclasses.replace(Settings.from_env(), embedder="nope"))
