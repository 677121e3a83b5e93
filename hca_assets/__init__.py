"""hca_assets: an open, local-first medical-imaging data platform built on Dagster."""

import os

__version__ = "0.1.0"

# onnxruntime (the OCR, the net, ONNX models) otherwise writes a telemetry device id into ~/.cache/Microsoft at
# import: nothing outside the data folder, and no telemetry from a hospital's machine (set it to 0 to allow)
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
