"""Local stubs of the MedImageInsight and MedImageParse scoring endpoints, as strict as the published contract
(path /score, bearer key, JSON split envelope with exactly the columns image/text and index 0..n-1, PNG only,
1024² for MedImageParse), answering in the live-output shapes, with fault injection (started by the tests)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

DIM = 1024
MIP_SIZE = 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MODEL_ERROR = {"ms-azureml-model-error-statuscode": "500", "ms-azureml-model-error-reason": "model_error: CUDA out of memory"}
_CATEGORIES = {"liver": "liver", "lung": "lung", "kidney": "kidney", "pancreas": "pancreas", "heart": "heart anatomies",
               "tumor": "tumor", "lesion": "other lesion"}


class BadRequest(ValueError):
    """The request breaks the contract: the stub answers 400."""


def vector_for(payload: bytes) -> list[float]:
    """Deterministic unit vector for some input bytes (same input → same vector)."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(payload).digest()[:8], "big"))
    v = rng.normal(size=DIM)
    return (v / np.linalg.norm(v)).tolist()


def _disk(prompt: str) -> tuple[int, int, int]:
    h = hashlib.sha256(prompt.encode()).digest()
    return 200 + h[0] * 2, 200 + h[1] * 2, 40 + h[2]  # centre row, centre column, radius


def mip_mask(prompt: str, size: int = MIP_SIZE) -> np.ndarray:
    """The stub's uint8 mask for a prompt: a disk at 255 with a rim of 129 just inside and 128 just outside
    (a client must threshold at > 128)."""
    cy, cx, r = _disk(prompt)
    yy, xx = np.ogrid[:size, :size]
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    mask = np.zeros((size, size), np.uint8)
    mask[d < r + 3] = 128
    mask[d < r] = 129
    mask[d < r - 2] = 255
    return mask


def expected_mask(prompt: str) -> np.ndarray:
    """What a correct client returns for ``prompt``: bool[1024, 1024]."""
    cy, cx, r = _disk(prompt)
    yy, xx = np.ogrid[:MIP_SIZE, :MIP_SIZE]
    return np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) < r


def _png(value: object, what: str) -> Image.Image:
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)  # base64.encodebytes' line breaks allowed
    except (binascii.Error, ValueError):
        raise BadRequest(f"{what} is not base64") from None
    if not raw.startswith(PNG_MAGIC):
        raise BadRequest(f"{what} is not a PNG")
    image = Image.open(io.BytesIO(raw))
    if image.mode not in ("L", "RGB"):
        raise BadRequest(f"{what} must be 8-bit grey or RGB, got {image.mode}")
    return image


class ScoringStub:
    """Speaks the scoring contract on 127.0.0.1. ``faults`` is a queue of what the next requests get:
    "404" | "408" | "424" (with ms-azureml-model-error-* headers) | "429" | "500" | "503", optionally
    ":<seconds>" for a Retry-After header ("429:1"); "timeout" (answers after ``slow_seconds``); "reset"
    (connection closed, no answer); "malformed" (invalid JSON); shapes "bare" (one object, not a list),
    "flat" (flat vectors), "object_features" (image_features an object, not a JSON string), "no_features",
    "wrong_dim". Error bodies echo the first row's text, as a careless service might: clients must not."""

    max_rows = 1024

    def __init__(self, key: str = "stub-key", slow_seconds: float = 1.5) -> None:
        self.key, self.slow_seconds = key, slow_seconds
        self.faults: list[str] = []
        self.requests = 0
        self.rows_seen = 0
        self.texts: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: object, headers: dict[str, str] | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                                    **(headers or {})}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(405, {"error": "method not allowed"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with stub._lock:
                    stub.requests += 1
                    stub.headers.append(dict(self.headers.items()))
                    fault = stub.faults.pop(0) if stub.faults else None
                if self.path != "/score":
                    return self._send(404, {"error": "not found"})
                if self.headers.get("Authorization") != f"Bearer {stub.key}":
                    return self._send(401, {"error": "unauthorized"})
                if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                    return self._send(415, {"error": "Content-Type must be application/json"})
                code, _, retry_after = (fault or "").partition(":")
                if code.isdigit():
                    headers = MODEL_ERROR if code == "424" else {}
                    if retry_after:
                        headers = {**headers, "Retry-After": retry_after}
                    return self._send(int(code), {"error": "injected", "input": _first_text(body)}, headers)
                if fault == "reset":
                    self.close_connection = True
                    return None
                if fault == "timeout":
                    time.sleep(stub.slow_seconds)
                if fault == "malformed":
                    return self._send(200, b'[{"image_features": [[0.1, ')
                try:
                    rows = stub.parse(body)
                except BadRequest as exc:
                    return self._send(400, {"error": str(exc), "input": _first_text(body)})
                with stub._lock:
                    stub.rows_seen += len(rows)
                    stub.texts.extend(str(text) for _, text in rows)
                return self._send(200, stub.shape(stub.answer(rows, fault), fault))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/score"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def parse(self, body: bytes) -> list[list[object]]:
        """The rows of a request that keeps the envelope contract; ``BadRequest`` otherwise."""
        try:
            request = json.loads(body)
        except ValueError:
            raise BadRequest("body is not JSON") from None
        if not isinstance(request, dict) or "input_data" not in request or set(request) - {"input_data", "params"}:
            raise BadRequest("body must be {input_data, params}")
        data = request["input_data"]
        if not isinstance(data, dict) or set(data) != {"columns", "index", "data"}:
            raise BadRequest("input_data must have exactly columns, index and data")
        if data["columns"] != ["image", "text"]:
            raise BadRequest("columns must be exactly ['image', 'text']")
        rows = data["data"]
        if not isinstance(rows, list) or not 1 <= len(rows) <= self.max_rows:
            raise BadRequest(f"data must hold 1..{self.max_rows} rows")
        if data["index"] != list(range(len(rows))):
            raise BadRequest("index must be 0..n-1")
        if not all(isinstance(r, list) and len(r) == 2 for r in rows):
            raise BadRequest("every row must be [image, text]")
        self.check(request.get("params"), rows)
        return rows

    def check(self, params: object, rows: list[list[object]]) -> None:
        """Model-specific request rules."""
        raise NotImplementedError

    def answer(self, rows: list[list[object]], fault: str | None) -> list[dict[str, object]]:
        """One reply object per row, in the live-output shape."""
        raise NotImplementedError

    def shape(self, rows: list[dict[str, object]], fault: str | None) -> object:
        """The other documented reply shapes, on request."""
        if fault == "no_features":
            return [{k: v for k, v in row.items() if not k.endswith("_features")} for row in rows]
        if fault == "bare":
            return rows[0] if len(rows) == 1 else {k: [row[k][0] for row in rows] for k in rows[0]
                                                  if k.endswith("_features") and all(k in row for row in rows)}
        return rows

    def __enter__(self) -> ScoringStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _first_text(body: bytes) -> str:
    try:
        return str(json.loads(body)["input_data"]["data"][0][1])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


class Mi2Stub(ScoringStub):
    """MedImageInsight: rows [PNG or ""/null, text or ""/null]; a row gets features only for what it carries."""

    def check(self, params: object, rows: list[list[object]]) -> None:
        if params is not None and not isinstance(params, dict):
            raise BadRequest("params must be an object")
        for i, (image, text) in enumerate(rows):
            if image not in ("", None):
                _png(image, f"row {i} image")
            if text is not None and not isinstance(text, str):
                raise BadRequest(f"row {i} text must be a string or null")

    def answer(self, rows: list[list[object]], fault: str | None) -> list[dict[str, object]]:
        out = []
        for image, text in rows:
            row: dict[str, object] = {"scaling_factor": 4.513362}
            if image:
                pixels = np.asarray(_png(image, "image")).tobytes()
                vector = vector_for(pixels)[: 512 if fault == "wrong_dim" else DIM]
                row["image_features"] = vector if fault == "flat" else [vector]
            if text:
                vector = vector_for(str(text).encode())
                row["text_features"] = vector if fault == "flat" else [vector]
            out.append(row)
        return out


class MipStub(ScoringStub):
    """MedImageParse: rows [1024² PNG, prompts joined by "&"]; ``params`` ignored (the toolkit sends "sitk")."""

    max_rows = 256

    def check(self, params: object, rows: list[list[object]]) -> None:
        for i, (image, text) in enumerate(rows):
            size = _png(image, f"row {i} image").size
            if size != (MIP_SIZE, MIP_SIZE):
                raise BadRequest(f"row {i} image must be {MIP_SIZE}x{MIP_SIZE}, got {size[0]}x{size[1]}")
            if not isinstance(text, str) or not all(p.strip() for p in text.split("&")):
                raise BadRequest(f"row {i} text must be prompts joined by '&'")

    def answer(self, rows: list[list[object]], fault: str | None) -> list[dict[str, object]]:
        out = []
        for _, text in rows:
            prompts = [p.strip() for p in str(text).split("&")]
            size = 512 if fault == "wrong_dim" else MIP_SIZE
            masks = np.stack([mip_mask(p, size) for p in prompts])
            features = {"data": base64.b64encode(masks.tobytes()).decode(), "shape": list(masks.shape), "dtype": "uint8"}
            out.append({"image_features": features if fault == "object_features" else json.dumps(features),
                        "text_features": [next((c for k, c in _CATEGORIES.items() if k in p.lower()), "other")
                                          for p in prompts]})
        return out


CXR_COLUMNS = ("frontal_image", "lateral_image", "prior_image", "indication", "technique", "comparison", "prior_report")
CXR_FINDINGS = [["The heart size is normal.", None], ["Opacity in the left lower lobe.", [[0.6, 0.55, 0.85, 0.8]]]]


class CxrStub(ScoringStub):
    """CXRReportGen: columns any subset of :data:`CXR_COLUMNS` with ``frontal_image``; images PNG; replies the live
    shape ``[{"output": "<JSON string>"}]`` (fault "bare": the docs' ``{"output": [[...]]}``). ``columns`` keeps what
    each request sent."""

    max_rows = 10

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.columns: list[list[str]] = []

    def parse(self, body: bytes) -> list[list[object]]:
        try:
            request = json.loads(body)
            data = request["input_data"]
            columns, rows = data["columns"], data["data"]
        except (ValueError, KeyError, TypeError):
            raise BadRequest("body must be {input_data: {columns, index, data}}") from None
        if "frontal_image" not in columns or set(columns) - set(CXR_COLUMNS) or len(set(columns)) != len(columns):
            raise BadRequest(f"columns must include frontal_image and be among {CXR_COLUMNS}")
        if not isinstance(rows, list) or not 1 <= len(rows) <= self.max_rows or data["index"] != list(range(len(rows))):
            raise BadRequest(f"data must hold 1..{self.max_rows} rows indexed 0..n-1")
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(columns):
                raise BadRequest(f"row {i} must have one value per column")
            for name, value in zip(columns, row, strict=True):
                if name.endswith("_image"):
                    _png(value, f"row {i} {name}")
                elif not isinstance(value, str):
                    raise BadRequest(f"row {i} {name} must be a string")
        with self._lock:
            self.columns.append(list(columns))
        return [[row[0], ""] for row in rows]

    def answer(self, rows: list[list[object]], fault: str | None) -> list[dict[str, object]]:
        return [{"output": CXR_FINDINGS if fault == "bare" else json.dumps(CXR_FINDINGS)} for _ in rows]

    def shape(self, rows: list[dict[str, object]], fault: str | None) -> object:
        return rows[0] if fault == "bare" else rows
