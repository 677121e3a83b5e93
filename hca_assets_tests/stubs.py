"""A local stub of the MedImageInsight scoring endpoint, with fault injection (started by the tests)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

DIM = 1024


def vector_for(payload: bytes) -> list[float]:
    """Deterministic unit vector for some input bytes (same input → same vector)."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(payload).digest()[:8], "big"))
    v = rng.normal(size=DIM)
    return (v / np.linalg.norm(v)).tolist()


class Mi2Stub:
    """Speaks the scoring contract on 127.0.0.1: ``faults`` is a queue of what the next requests get:
    "429", "500", "timeout" (answers after ``slow_seconds``), "malformed" (invalid JSON), "wrong_dim"."""

    def __init__(self, key: str = "stub-key", slow_seconds: float = 1.5) -> None:
        self.key, self.slow_seconds = key, slow_seconds
        self.faults: list[str] = []
        self.requests = 0
        self.rows_seen = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                stub.requests += 1
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Authorization") != f"Bearer {stub.key}":
                    return self._send(401, b'{"error": "unauthorized"}')
                fault = stub.faults.pop(0) if stub.faults else None
                if fault in ("429", "500"):
                    return self._send(int(fault), b'{"error": "injected"}')
                if fault == "timeout":
                    time.sleep(stub.slow_seconds)
                if fault == "malformed":
                    return self._send(200, b'{"image_features": [[0.1, ')
                try:
                    request = json.loads(body)
                    data = request["input_data"]
                    assert data["columns"] == ["image", "text"] and data["index"] == list(range(len(data["data"])))
                except (ValueError, KeyError, AssertionError):
                    return self._send(400, b'{"error": "bad request"}')
                rows = []
                for image, text in data["data"]:
                    stub.rows_seen += 1
                    row: dict[str, object] = {"scaling_factor": 4.513362}
                    if image:
                        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(image))))
                        row["image_features"] = [vector_for(pixels.tobytes())[: 512 if fault == "wrong_dim" else DIM]]
                    if text:
                        row["text_features"] = [vector_for(text.encode())]
                    rows.append(row)
                return self._send(200, json.dumps(rows).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/score"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Mi2Stub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
