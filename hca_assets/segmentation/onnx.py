"""A user-supplied ONNX segmentation model (an exported nnU-Net / TotalSegmentator-style network) behind the
segmenter protocol, run with onnxruntime on the CPU.

Beside the model a small JSON (``<model>.json`` unless named) says how to drive it::

    {"dims": 2,                         # 2: slice by slice (axial view; planar images as displayed); 3: whole volume
     "input_size": [256, 256],          # spatial size the model takes; null: the model's fixed size, else the input's own
     "normalise": {"window": "soft_tissue"},   # or {"window": [-160, 240]} -> [0, 1]; {"zscore": "volume"};
                                        # {"zscore": [mean, std], "clip": [low, high]}; {} = values as they are
     "output": "argmax",                # or "sigmoid": one logit channel per label, a voxel belongs where logit > 0
     "labels": {"liver": 1, "spleen": 2}}      # prompt -> label value = output channel

The model takes float32 ``(1, 1, *input_size)`` and returns ``(1, channels, *input_size)``. Slices are the
radiological axial view of the RAS+ volume (:func:`base.axial_view`, the array SimpleITK gives for an LPS
image); a 3D model gets them stacked (slices, rows, columns). Inputs are resampled linearly to
``input_size`` and labels back to the input grid by nearest neighbour. A prompt not in ``labels``, or a planar
image given to a 3D model, is ``UNSUPPORTED``. The version is the model file's and the JSON's sha256 prefixes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from hca_assets.dicom.pixels import WINDOWS
from hca_assets.segmentation.base import (
    UNSUPPORTED,
    BackendFailure,
    Outcome,
    axial_view,
    outcomes,
    well_formed,
)

__all__ = ["ModelSpec", "OnnxSegmenter", "labels_path", "onnx_version"]


@dataclass(frozen=True)
class ModelSpec:
    """The label JSON: how to feed the model and read its output."""

    dims: int
    input_size: tuple[int, ...] | None
    normalise: dict[str, object]
    output: str
    labels: dict[str, int]

    @classmethod
    def read(cls, path: Path) -> ModelSpec:
        """The spec in ``path``; ``ValueError`` naming the file and the field for anything malformed."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path.name}: not a readable JSON file ({type(exc).__name__})") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"{path.name}: expected a JSON object")
        dims, size, norm = raw.get("dims"), raw.get("input_size"), raw.get("normalise", {})
        output, labels = raw.get("output", "argmax"), raw.get("labels")
        if dims not in (2, 3):
            raise ValueError(f"{path.name}: `dims` must be 2 or 3, got {dims!r}")
        if size is not None and (not isinstance(size, list) or len(size) != dims
                                 or not all(isinstance(n, int) and n > 0 for n in size)):
            raise ValueError(f"{path.name}: `input_size` must be null or {dims} positive integers, got {size!r}")
        if output not in ("argmax", "sigmoid"):
            raise ValueError(f"{path.name}: `output` must be 'argmax' or 'sigmoid', got {output!r}")
        if not isinstance(labels, dict) or not labels or not all(
                isinstance(p, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for p, v in labels.items()):
            raise ValueError(f"{path.name}: `labels` must map prompts to label values (integers >= 0)")
        return cls(dims, tuple(size) if size else None, _check_normalise(path.name, norm), output, labels)

    def normalised(self, values: np.ndarray) -> np.ndarray:
        """``values`` (HU for CT) as the model was trained to see them."""
        norm = self.normalise
        if "window" in norm:
            w = norm["window"]
            low, high = (WINDOWS[w].low, WINDOWS[w].high) if isinstance(w, str) else w  # type: ignore[misc]
            return ((np.clip(values, low, high) - low) / (high - low)).astype(np.float32)
        if "clip" in norm:
            values = np.clip(values, *norm["clip"])  # type: ignore[misc]
        z = norm.get("zscore")
        if z == "volume":
            std = float(values.std())
            return ((values - values.mean()) / std if std else np.zeros_like(values)).astype(np.float32)
        if z is not None:
            mean, std = z  # type: ignore[misc]
            return ((values - mean) / std).astype(np.float32)
        return values.astype(np.float32)


def _pair(value: object) -> bool:
    """A [low, high] list of numbers with low < high."""
    return (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value)
            and value[0] < value[1])


def _check_normalise(name: str, norm: object) -> dict[str, object]:
    """``norm`` if it is {}, {"window": a preset or [low, high]} or {"zscore": "volume" or [mean, std > 0]} with an
    optional "clip": [low, high]; else a ``ValueError``."""
    keys = set(norm) if isinstance(norm, dict) else {"?"}
    window, z = (norm.get("window"), norm.get("zscore")) if isinstance(norm, dict) else (None, None)
    if keys <= {"window"}:
        ok = not keys or (isinstance(window, str) and window in WINDOWS) or _pair(window)
    else:
        ok = keys <= {"zscore", "clip"} and "zscore" in keys and ("clip" not in keys or _pair(norm["clip"]))  # type: ignore[index]
        ok = ok and (z == "volume" or (isinstance(z, list) and len(z) == 2
                                       and all(isinstance(v, int | float) for v in z) and z[1] > 0))
    if not ok:
        raise ValueError(f"{name}: `normalise` must be {{}}, {{\"window\": one of {sorted(WINDOWS)} or [low, high]}} or "
                         f"{{\"zscore\": \"volume\" or [mean, std], \"clip\": [low, high] (optional)}}, got {norm!r}")
    return norm  # type: ignore[return-value]


def labels_path(model: Path, labels: Path | None = None) -> Path:
    """The label JSON of ``model``: the one named, else the model's path with ``.json`` instead of ``.onnx``."""
    return labels or model.with_suffix(".json")


def onnx_version(model: Path, labels: Path | None = None) -> str:
    """``sha256-<model 12>-<labels 8>``: the files are the version (a changed label map re-segments too)."""
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "missing"
               for p in (model, labels_path(model, labels))]
    return f"sha256-{digests[0][:12]}-{digests[1][:8]}"


def _resample(array: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    """``array`` on a grid of ``shape`` spanning the same extent (pixel edges aligned; linear or nearest)."""
    if array.shape == shape:
        return array
    out = ndi.zoom(array, [t / s for t, s in zip(shape, array.shape, strict=True)], order=order, grid_mode=True,
                   mode="nearest")
    assert out.shape == shape, (out.shape, shape)
    return out


class OnnxSegmenter:
    """``segment`` with the model at ``model_path`` as its label JSON describes (see the module doc)."""

    name = "onnx"

    def __init__(self, model_path: Path, labels: Path | None = None) -> None:
        import onnxruntime as ort

        spec_path = labels_path(model_path, labels)
        if not model_path.is_file():
            raise FileNotFoundError(f"no ONNX model at {model_path}")
        if not spec_path.is_file():
            raise FileNotFoundError(f"no label JSON for the ONNX model at {spec_path}")
        self.spec = ModelSpec.read(spec_path)
        try:
            self.session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a file it cannot load
            raise ValueError(f"{model_path.name} is not a loadable ONNX model ({type(exc).__name__})") from exc
        (first, *_) = self.session.get_inputs()
        if len(first.shape) != self.spec.dims + 2:
            raise ValueError(f"{spec_path.name} says dims {self.spec.dims}, but the model's input is {first.shape}: "
                             f"expected (batch, channel, {'rows, columns' if self.spec.dims == 2 else 'slices, rows, columns'})")
        fixed = tuple(first.shape[2:]) if all(isinstance(n, int) for n in first.shape[2:]) else None
        if fixed and self.spec.input_size and fixed != self.spec.input_size:
            raise ValueError(f"{spec_path.name} says input_size {list(self.spec.input_size)}, the model takes {list(fixed)}")
        self.input_size, self.input_name = self.spec.input_size or fixed, first.name
        self.version = onnx_version(model_path, labels)

    def segment(self, volume: np.ndarray, spacing_mm: Sequence[float], prompts: Sequence[str]) -> dict[str, Outcome]:
        data = np.asarray(volume, dtype=np.float32)
        served = [p for p in dict.fromkeys(prompts) if p in self.spec.labels]
        if not well_formed(data, spacing_mm) or not served or (data.ndim == 2 and self.spec.dims == 3):
            return dict.fromkeys(prompts, UNSUPPORTED)
        values = self.spec.normalised(data)
        stack = values[np.newaxis] if data.ndim == 2 else axial_view(values)
        if self.spec.dims == 2:
            labelled = [self._run(frame, served) for frame in stack]
            masks = {p: np.stack([m[p] for m in labelled]) for p in served}
        else:
            masks = self._run(np.ascontiguousarray(stack), served)
        return outcomes(masks, data.ndim, prompts)

    def _run(self, array: np.ndarray, prompts: list[str]) -> dict[str, np.ndarray]:
        """One model call on ``array`` (a slice or the slice stack): a boolean mask per prompt on its grid."""
        x = _resample(array, self.input_size, order=1) if self.input_size else array
        try:
            (out, *_) = self.session.run(None, {self.input_name: x[np.newaxis, np.newaxis].astype(np.float32)})
        except Exception as exc:  # onnxruntime's own error types (shape, type)
            raise BackendFailure(f"the ONNX model failed on a {'×'.join(map(str, x.shape))} input "
                                 f"({type(exc).__name__})") from exc
        out = np.asarray(out)
        channels = max(self.spec.labels[p] for p in prompts) + 1
        if out.ndim != x.ndim + 2 or out.shape[0] != 1 or out.shape[2:] != x.shape or out.shape[1] < channels:
            raise BackendFailure(f"the ONNX model returned {list(out.shape)} for a {list(x.shape)} input; expected "
                                 f"[1, >= {channels} channels, {', '.join(map(str, x.shape))}]")
        if not np.isfinite(out).all():
            raise BackendFailure("the ONNX model returned non-finite values")
        scores = out[0]
        if self.spec.output == "argmax":
            labelmap = scores.argmax(axis=0)
            found = {p: labelmap == self.spec.labels[p] for p in prompts}
        else:
            found = {p: scores[self.spec.labels[p]] > 0 for p in prompts}
        return {p: _resample(m.astype(np.uint8), array.shape, order=0).astype(bool) for p, m in found.items()}
