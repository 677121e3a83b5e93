"""A user-supplied ONNX image-embedding model, run with onnxruntime on the CPU.

The model must take one float32 input shaped (batch, channels, height, width) and return (batch, dim).
Images are resized to the model's spatial size (antialiased bilinear), scaled to [0, 1] and standardised with
``mean``/``std``, repeated to 3 channels when the model wants them, run in batches with ``threads`` intra-op threads,
and the outputs L2-normalised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from hca_assets.models.base import l2_normalise

__all__ = ["OnnxEmbedder"]


class OnnxEmbedder:
    name = "onnx"
    supports_text = False

    def __init__(self, model_path: Path, *, mean: float = 0.0, std: float = 1.0, batch_size: int = 16,
                 threads: int = 0) -> None:
        import onnxruntime as ort

        if not model_path.is_file():
            raise FileNotFoundError(f"no ONNX model at {model_path} (set HCA_ONNX_MODEL)")
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1  # 0: onnxruntime's own choice
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"the model must have one (batch, channels, height, width) input, got "
                             f"{[(i.name, i.shape) for i in inputs]}")
        _, self.channels, self.height, self.width = inputs[0].shape
        if not all(isinstance(v, int) for v in (self.channels, self.height, self.width)):
            raise ValueError(f"the model input needs fixed channels/height/width, got {inputs[0].shape}")
        dim = outputs[0].shape[-1]
        if not isinstance(dim, int):
            raise ValueError(f"the model output needs a fixed last dimension, got {outputs[0].shape}")
        self.dim = dim
        self.input_name = inputs[0].name
        self.mean, self.std, self.batch_size = mean, std, batch_size
        self.version = "sha256-" + hashlib.sha256(model_path.read_bytes()).hexdigest()[:12]  # the file is the version

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        grey = Image.fromarray(np.asarray(image)).convert("L").resize((self.width, self.height), Image.Resampling.BILINEAR)
        x = (np.asarray(grey, dtype=np.float32) / 255.0 - self.mean) / self.std
        return np.repeat(x[np.newaxis], self.channels, axis=0)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = np.stack([self._prepare(i) for i in images[start:start + self.batch_size]])
            out.append(np.asarray(self.session.run(None, {self.input_name: batch})[0], dtype=np.float32))
        vectors = np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
        if not np.isfinite(vectors).all():
            raise ValueError("the ONNX model produced non-finite values")
        return l2_normalise(vectors)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError("the onnx backend embeds images only")
