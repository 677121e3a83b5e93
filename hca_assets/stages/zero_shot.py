"""Zero-shot classification of the labelled images by text prompts, for backends that embed text (what the
``zero_shot_eval`` asset calls)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from hca_assets.config import Settings
from hca_assets.evaluation.zero_shot import TARGET, class_prompt, zero_shot_rows
from hca_assets.lake import registry as tables
from hca_assets.lake.delta import WriteResult
from hca_assets.models.base import Embedder, vectors_of

__all__ = ["ZeroShotRun", "run_zero_shot"]


@dataclass(frozen=True)
class ZeroShotRun:
    """One zero-shot evaluation: its rows, their write and the text-space scaling factor used."""

    table: pa.Table
    written: WriteResult
    scaling_factor: float


def run_zero_shot(settings: Settings, embedder: Embedder, version: str, run_id: str) -> ZeroShotRun:
    """Each labelled image's nearest class prompt ('<modality> <anatomy>') in ``embedder``'s text space, softmax at
    its scaling factor; accuracy per class into ``evaluations`` (target zero_shot) for this run."""
    labels = {r["sop_instance_uid"]: r["class_label"] for r in tables.LABELS.read(settings).to_pylist()}
    emb = tables.EMBEDDINGS.read(settings, where={"code_version": version})
    keep = np.array([sop in labels for sop in emb.column("sop_instance_uid").to_pylist()], dtype=bool)
    emb = emb.filter(keep) if emb.num_rows else emb
    truth = [labels[s] for s in emb.column("sop_instance_uid").to_pylist()]
    classes = sorted(set(truth))
    prompts = [class_prompt(c) for c in classes]
    texts = embedder.embed_text(prompts) if classes else np.zeros((0, embedder.dim), np.float32)
    scale = embedder.scaling_factor(prompts[0]) if classes else 0.0  # type: ignore[attr-defined]
    table = zero_shot_rows(vectors_of(emb) if emb.num_rows else np.zeros((0, embedder.dim)), truth, texts, classes,
                           scale, version, run_id)
    return ZeroShotRun(table, tables.EVALUATIONS.write(settings, table, match={"run_id": run_id, "target": TARGET}),
                       scale)
