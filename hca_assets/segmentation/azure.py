"""MedImageParse on an Azure AI Foundry online endpoint behind the segmenter protocol.

A planar image is scaled to 8 bits (1st/99th percentiles), letterboxed into the 1024² frame and sent once; a
RAS+ volume is sent one axial slice at a time in radiological display (:func:`base.axial_view`), CT windowed
per prompt (lung targets in the lung window, the rest in the soft-tissue window; CT recognised by outside
air ≤ -500 HU), other volumes scaled by the whole volume's percentiles. Prompts that share a window share a
request; requests run on ``concurrency`` threads. Each mask maps back from the frame to the source grid with
:meth:`Letterbox.to_source` and onto the RAS+ grid with :func:`base.from_axial_view`.

A prompt MedImageParse was not trained on for the input's modality (X-Ray for planar images, CT, MRI;
``mip_targets.json``) is ``UNSUPPORTED``. The endpoint gives no confidence, so it is None.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib import resources

import numpy as np

from hca_assets.dicom.pixels import WINDOWS, Letterbox, Window, scale_to_uint8
from hca_assets.models.endpoint import EndpointError
from hca_assets.models.medimageparse import MedImageParseClient
from hca_assets.segmentation.base import (
    UNSUPPORTED,
    BackendFailure,
    Outcome,
    axial_view,
    looks_like_ct,
    outcomes,
    well_formed,
)

__all__ = ["AzureSegmenter", "mip_target"]


@cache
def _targets() -> dict:  # type: ignore[type-arg]
    return json.loads(resources.files(__package__).joinpath("mip_targets.json").read_text())


def mip_target(prompt: str, modality: str) -> str | None:
    """The target text MedImageParse is sent for ``prompt`` on ``modality`` (CT, MRI, X-Ray); None if unknown."""
    data = _targets()
    target = data["aliases"].get(prompt, prompt)
    return target if modality in data["targets"].get(target, ()) else None


def _window(target: str, modality: str) -> Window | None:
    if modality != "CT":
        return None
    return WINDOWS["lung" if target in _targets()["lung_window"] else "soft_tissue"]


class AzureSegmenter:
    """``segment`` through a :class:`MedImageParseClient` (see the module doc); endpoint failures raise
    :class:`BackendFailure` carrying the HTTP status and reason."""

    name = "azure-mip"

    def __init__(self, client: MedImageParseClient, *, concurrency: int = 2) -> None:
        if concurrency < 1:
            raise ValueError(f"`concurrency` must be >= 1, got {concurrency}")
        self.client, self.concurrency, self.version = client, concurrency, client.version

    def __repr__(self) -> str:  # the client never shows its key
        return f"AzureSegmenter({self.client!r}, concurrency={self.concurrency})"

    def segment(self, volume: np.ndarray, spacing_mm: Sequence[float], prompts: Sequence[str]) -> dict[str, Outcome]:
        data = np.asarray(volume, dtype=np.float32)
        if not well_formed(data, spacing_mm) or np.ptp(data) == 0:
            return dict.fromkeys(prompts, UNSUPPORTED)
        modality = "X-Ray" if data.ndim == 2 else "CT" if looks_like_ct(data) else "MRI"
        targets = {p: t for p in dict.fromkeys(prompts) if (t := mip_target(p, modality))}
        if not targets:
            return dict.fromkeys(prompts, UNSUPPORTED)
        frames = data[np.newaxis] if data.ndim == 2 else axial_view(data)
        groups: dict[Window | None, list[str]] = {}
        for prompt, target in targets.items():
            groups.setdefault(_window(target, modality), []).append(prompt)
        box = Letterbox.of(frames[0])
        masks = {p: np.zeros(frames.shape, dtype=bool) for p in targets}

        stop = threading.Event()  # after a failure, requests not yet sent are not sent

        def one(scaled: np.ndarray, k: int, group: list[str]) -> None:
            if stop.is_set():
                return
            try:
                found = self.client.segment(box.apply(scaled[k]), [targets[p] for p in group])
            except BaseException:
                stop.set()
                raise
            for prompt, frame_mask in zip(group, found, strict=True):
                masks[prompt][k] = box.to_source(frame_mask)

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="mip") as pool:
            futures = []
            for window, group in groups.items():
                scaled = scale_to_uint8(frames, window)  # one window (or the whole volume's percentiles) per group
                futures += [(k, pool.submit(one, scaled, k, group)) for k in range(len(frames))]
        for k, future in futures:
            exc = future.exception()
            if isinstance(exc, EndpointError):
                where = f"slice {k + 1} of {len(frames)}: " if data.ndim == 3 else ""
                raise BackendFailure(f"MedImageParse {where}{exc}") from exc
            if exc is not None:
                raise exc
        return outcomes(masks, data.ndim, prompts)
