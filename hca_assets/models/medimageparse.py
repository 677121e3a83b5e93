"""MedImageParse (2D, prompt-driven segmentation) on an Azure AI Foundry online endpoint: one 1024² PNG and
its prompts joined by " & " in, one uint8 mask per prompt out (decoded from the JSON-string
``image_features``, thresholded at > 128), over the shared transport in ``endpoint.py``.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image

from hca_assets.dicom.pixels import IMAGE_SIZE
from hca_assets.models.endpoint import ContractError, Endpoint, single_row_field

__all__ = ["MASK_THRESHOLD", "PROMPT_SEPARATOR", "SIZE", "MedImageParseClient"]

SIZE = IMAGE_SIZE  # the endpoint takes the 1024² frames the pipeline renders (its contract is that size)
PROMPT_SEPARATOR = " & "
MASK_THRESHOLD = 128  # mask values are 0–255; a pixel belongs to the target where value > 128
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_bytes(image: bytes | np.ndarray) -> bytes:
    """The PNG to send: given bytes are checked (PNG, 1024², 8-bit grey or RGB) and sent as they are; an
    array (uint8, 1024² grey or RGB) is encoded as RGB PNG."""
    if isinstance(image, bytes | bytearray):
        if not image.startswith(_PNG_MAGIC):
            raise ValueError("MedImageParse needs a PNG image")
        with Image.open(io.BytesIO(image)) as pil:
            size, mode = pil.size, pil.mode
        if size != (SIZE, SIZE) or mode not in ("L", "RGB"):
            raise ValueError(f"MedImageParse needs an 8-bit grey or RGB {SIZE}×{SIZE} PNG, got {mode} {size[0]}×{size[1]}")
        return bytes(image)
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.shape not in ((SIZE, SIZE), (SIZE, SIZE, 3)):
        raise ValueError(f"MedImageParse needs a uint8 {SIZE}×{SIZE} grey or RGB image, got {array.dtype} {array.shape}")
    rgb = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _check_prompts(prompts: list[str]) -> str:
    if not prompts or any(not isinstance(p, str) or not p.strip() or "&" in p for p in prompts):
        raise ValueError("MedImageParse needs one or more non-empty prompts, none containing '&'")
    return PROMPT_SEPARATOR.join(p.strip() for p in prompts)


def decode_masks(reply: object, n_prompts: int) -> np.ndarray:
    """bool[n_prompts, 1024, 1024] from a reply (list of rows or bare object; ``image_features`` a JSON string
    or an object ``{"data": b64, "shape": [...], "dtype": "uint8"}``); anything else is a ``ContractError``."""
    features = single_row_field(reply, "image_features", "image")
    if not isinstance(features, dict) or not {"data", "shape", "dtype"} <= features.keys():
        raise ContractError("reply row has no 'image_features' with data, shape and dtype")
    expected = (n_prompts, SIZE, SIZE)
    if features["dtype"] != "uint8" or not isinstance(features["shape"], list) or tuple(features["shape"]) != expected:
        raise ContractError(f"expected uint8 masks of shape {list(expected)}, got "
                            f"{str(features['dtype'])[:20]} {str(features['shape'])[:40]}")
    try:
        raw = base64.b64decode("".join(str(features["data"]).split()), validate=True)  # line breaks allowed
    except (binascii.Error, ValueError):
        raise ContractError("'image_features' data is not base64") from None
    if len(raw) != int(np.prod(expected)):
        raise ContractError(f"mask data has {len(raw)} bytes, expected {int(np.prod(expected))}")
    return np.frombuffer(raw, np.uint8).reshape(expected) > MASK_THRESHOLD


class MedImageParseClient:
    """``segment(png, prompts)`` → bool masks ``[n_prompts, 1024, 1024]`` on the padded 1024² frame."""

    name = "azure-mip"

    def __init__(self, endpoint: Endpoint, *, version: str = "medimageparse-1") -> None:
        self.endpoint, self.version = endpoint, version

    def __repr__(self) -> str:  # never shows the key
        return f"MedImageParseClient({self.endpoint!r}, version={self.version!r})"

    def segment(self, png_1024_rgb: bytes | np.ndarray, prompts: list[str]) -> np.ndarray:
        """One request: the image with its prompts joined by " & "; one mask per prompt, in prompt order."""
        text = _check_prompts(prompts)
        image = base64.b64encode(_png_bytes(png_1024_rgb)).decode()
        return decode_masks(self.endpoint.score([[image, text]]), len(prompts))
