"""CXRReportGen (grounded findings for chest X-rays) on an Azure AI Foundry online endpoint, over the shared
transport in ``endpoint.py``: a frontal image (and a lateral one when the study has it) with indication,
technique and comparison text in; findings out, each a sentence with zero or more boxes.

Reply shapes (``shared/reference`` §4): ``[{"output": "<JSON string>"}]`` in the live samples, ``{"output": [[...]]}``
in the docs; each finding is ``[sentence, null | [[x0, y0, x1, y1], ...]]`` with coordinates in 0–1 of the
**centre crop of the frontal image to its shorter side** (the sample notebook's reading, which we follow).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from hca_assets.models.endpoint import ContractError, Endpoint, single_row_field

__all__ = ["CxrReportGenClient", "Finding", "crop_box_to_pixels", "decode_findings", "png_b64"]

NONE_TEXT = "None"  # what the toolkit sends for an empty indication / technique / comparison


@dataclass(frozen=True)
class Finding:
    """One sentence of the report and its boxes (0–1 of the frontal image's centre square crop)."""

    sentence: str
    boxes: tuple[tuple[float, float, float, float], ...]


def png_b64(image: np.ndarray) -> str:
    """An 8-bit grey (or RGB) image as base64 RGB PNG, the form the toolkit sends."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"CXRReportGen needs an 8-bit grey or RGB image, got {array.dtype} {array.shape}")
    rgb = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _box(value: object) -> tuple[float, float, float, float]:
    if not (isinstance(value, list | tuple) and len(value) == 4 and all(isinstance(v, int | float) for v in value)):
        raise ContractError("a CXRReportGen box is not four numbers")
    x0, y0, x1, y1 = (float(v) for v in value)
    if not (0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1):
        raise ContractError("a CXRReportGen box lies outside 0–1 or is inverted")
    return x0, y0, x1, y1


def decode_findings(reply: object) -> list[Finding]:
    """The findings of a one-study reply (``output`` a JSON string or a list); anything else is a ``ContractError``."""
    output = single_row_field(reply, "output", "study")
    if not isinstance(output, list):
        raise ContractError("CXRReportGen reply has no `output` list")
    findings = []
    for item in output:
        if not (isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise ContractError("a CXRReportGen finding is not [sentence, boxes]")
        boxes = item[1] or []
        if not isinstance(boxes, list):
            raise ContractError("CXRReportGen boxes are not a list")
        findings.append(Finding(item[0].strip(), tuple(_box(b) for b in boxes)))
    return findings


def crop_box_to_pixels(box: Sequence[float], rows: int, columns: int) -> tuple[float, float, float, float]:
    """A 0–1 box of the centre square crop as (x0, y0, x1, y1) pixels of the whole ``rows``×``columns`` image."""
    side = min(rows, columns)
    dx, dy = (columns - side) / 2, (rows - side) / 2
    x0, y0, x1, y1 = box
    return x0 * side + dx, y0 * side + dy, x1 * side + dx, y1 * side + dy


class CxrReportGenClient:
    """Sends one study per request (the model keeps fewer than 10 rows in GPU memory; one is the toolkit's way)."""

    def __init__(self, endpoint: Endpoint, *, version: str = "cxrreportgen-1") -> None:
        self.endpoint, self.version = endpoint, version

    def __repr__(self) -> str:  # never shows the key
        return f"CxrReportGenClient({self.endpoint!r}, version={self.version!r})"

    def report(self, frontal: np.ndarray, *, lateral: np.ndarray | None = None, indication: str = "",
               technique: str = "", comparison: str = "") -> list[Finding]:
        """Grounded findings for one study: ``frontal`` (and ``lateral``) 8-bit images, and free text fields."""
        columns = ["frontal_image", *(["lateral_image"] if lateral is not None else []),
                   "indication", "technique", "comparison"]
        row = [png_b64(frontal), *([png_b64(lateral)] if lateral is not None else []),
               indication or NONE_TEXT, technique or NONE_TEXT, comparison or NONE_TEXT]
        return decode_findings(self.endpoint.score([row], columns=columns))
