"""Zero-shot classification with a backend that embeds text (MedImageInsight): each image's class is the prompt
whose text vector is nearest; probabilities are the softmax of ``exp(scaling_factor) · (image · text)``, the
model's own logit scale. Rows of ``evaluations`` (target ``zero_shot``, level ``image``)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from hca_assets.lake.schemas import EVALUATIONS

__all__ = ["METRICS", "TARGET", "class_prompt", "zero_shot_rows"]

TARGET = "zero_shot"
METRICS = ("accuracy", "true_class_probability")
# MedImageInsight's recommended text pattern is "<modality> <anatomy> <exam params> <pathology>"
_MODALITY_WORDS = {"ct": "computed tomography", "mr": "magnetic resonance imaging", "cr": "x-ray", "dx": "x-ray",
                   "us": "ultrasound", "mg": "mammography", "pt": "positron emission tomography"}


def class_prompt(class_label: str) -> str:
    """The text a class label is classified by: ``ct_chest`` → ``computed tomography chest``."""
    modality, _, region = class_label.partition("_")
    return " ".join(w for w in (_MODALITY_WORDS.get(modality, modality), region.replace("_", " ")) if w)


def zero_shot_rows(images: np.ndarray, truth: list[str], texts: np.ndarray, classes: list[str], scaling_factor: float,
                   code_version: str, run_id: str) -> pa.Table:
    """Overall and per-class accuracy and mean probability of the true class, for L2-normalised ``images`` whose
    true classes are ``truth`` against the ``texts`` vectors of ``classes``' prompts."""
    now = datetime.now(UTC)
    if not len(truth):
        return EVALUATIONS.empty_table()
    logits = np.exp(scaling_factor) * (images @ texts.T)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    index = {c: i for i, c in enumerate(classes)}
    true = np.array([index[t] for t in truth])
    correct = probs.argmax(axis=1) == true
    p_true = probs[np.arange(len(true)), true]
    base = {"run_id": run_id, "level": "image", "target": TARGET, "aggregation": None, "code_version": code_version,
            "evaluated_at": now}
    counts = Counter(truth)
    rows = [{**base, "label": "overall", "metric": "accuracy", "value": float(correct.mean()), "queries": len(truth)},
            {**base, "label": "overall", "metric": "true_class_probability", "value": float(p_true.mean()),
             "queries": len(truth)}]
    for c in sorted(counts):
        mask = true == index[c]
        rows += [{**base, "label": c, "metric": "accuracy", "value": float(correct[mask].mean()), "queries": counts[c]},
                 {**base, "label": c, "metric": "true_class_probability", "value": float(p_true[mask].mean()),
                  "queries": counts[c]}]
    return pa.Table.from_pylist(rows, schema=EVALUATIONS)
