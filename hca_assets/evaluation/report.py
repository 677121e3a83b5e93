"""Retrieval evaluations of the image, series and study embeddings, as rows of the ``evaluations`` table."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pyarrow as pa

from hca_assets.evaluation.retrieval import RetrievalMetrics, evaluate_retrieval
from hca_assets.lake.schemas import EVALUATIONS
from hca_assets.models.base import vectors_of
from hca_assets.models.study_vectors import study_vectors

__all__ = ["retrieval_rows"]


def _rows(m: RetrievalMetrics, level: str, target: str, aggregation: str | None, code_version: str, run_id: str,
          now: datetime) -> list[dict[str, object]]:
    base = {"run_id": run_id, "level": level, "target": target, "aggregation": aggregation,
            "code_version": code_version, "evaluated_at": now}
    out = [{**base, "metric": k, "value": v, "label": "overall", "queries": sum(m.n.values())} for k, v in m.overall.items()]
    for label, metrics in m.per_class.items():
        out += [{**base, "metric": k, "value": v, "label": label, "queries": m.n[label]} for k, v in metrics.items()]
    return out


def retrieval_rows(embeddings: pa.Table, series_embeddings: pa.Table, labels: pa.Table, code_version: str,
                   run_id: str) -> pa.Table:
    """Image level (class and lesion targets), series level (per aggregation) and study level leave-one-out kNN
    metrics."""
    now = datetime.now(UTC)
    by_sop = {r["sop_instance_uid"]: r for r in labels.to_pylist()}
    rows: list[dict[str, object]] = []
    emb = embeddings.filter(pa.compute.is_in(embeddings.column("sop_instance_uid"), value_set=labels.column("sop_instance_uid")))
    if emb.num_rows:
        vectors = vectors_of(emb)
        meta = emb.select(["sop_instance_uid", "patient_pseudonym", "series_instance_uid"]).to_pylist()
        classes = [by_sop[r["sop_instance_uid"]]["class_label"] for r in meta]
        patients = [r["patient_pseudonym"] for r in meta]
        series = [r["series_instance_uid"] for r in meta]
        rows += _rows(evaluate_retrieval(vectors, classes, patients, series), "image", "class_label", None, code_version, run_id, now)
        lesion_classes = {by_sop[s]["class_label"] for s in by_sop if by_sop[s]["lesion_present"]}
        pick = [i for i, c in enumerate(classes) if c in lesion_classes]
        if pick:
            lesion = [f"{classes[i]}:{'lesion' if by_sop[meta[i]['sop_instance_uid']]['lesion_present'] else 'none'}" for i in pick]
            m = evaluate_retrieval(vectors[pick], lesion, [patients[i] for i in pick], [series[i] for i in pick])
            rows += _rows(m, "image", "lesion", None, code_version, run_id, now)
    series_labels: dict[str, Counter[str]] = {}
    series_lesion: dict[str, bool] = {}
    for r in by_sop.values():
        series_labels.setdefault(r["series_instance_uid"], Counter())[r["class_label"]] += 1
        series_lesion[r["series_instance_uid"]] = r["study_has_lesion"]
    for aggregation in sorted(set(series_embeddings.column("aggregation").to_pylist())):
        table = series_embeddings.filter(pa.compute.equal(series_embeddings.column("aggregation"), aggregation))
        keep = [i for i, s in enumerate(table.column("series_instance_uid").to_pylist()) if s in series_labels]
        if len(keep) < 2:
            continue
        table = table.take(keep)
        vectors = vectors_of(table)
        s_ids = table.column("series_instance_uid").to_pylist()
        patients = table.column("patient_pseudonym").to_pylist()
        target = [f"{series_labels[s].most_common(1)[0][0]}:{'lesion' if series_lesion[s] else 'none'}" for s in s_ids]
        rows += _rows(evaluate_retrieval(vectors, target, patients, s_ids), "series", "class_and_lesion", aggregation,
                      code_version, run_id, now)
    rows += _study_rows(embeddings, series_embeddings, by_sop, code_version, run_id, now)
    return pa.Table.from_pylist(rows, schema=EVALUATIONS)


def _study_rows(embeddings: pa.Table, series_embeddings: pa.Table, by_sop: dict[str, dict[str, object]],
                code_version: str, run_id: str, now: datetime) -> list[dict[str, object]]:
    """Study vectors (mean of series vectors) against 'majority class of the study's labelled instances : lesion or
    none'; a query never retrieves its own patient's studies."""
    keys, vectors = study_vectors(embeddings, series_embeddings)
    study_of = dict(zip(embeddings.column("sop_instance_uid").to_pylist(),
                        embeddings.column("study_instance_uid").to_pylist(), strict=True))
    classes: dict[str, Counter[str]] = {}
    lesion: dict[str, bool] = {}
    for sop, r in by_sop.items():
        if sop in study_of:
            classes.setdefault(study_of[sop], Counter())[str(r["class_label"])] += 1
            lesion[study_of[sop]] = lesion.get(study_of[sop], False) or bool(r["study_has_lesion"])
    studies = keys.column("study_instance_uid").to_pylist()
    keep = [i for i, s in enumerate(studies) if s in classes]
    if len(keep) < 2:
        return []
    target = [f"{classes[studies[i]].most_common(1)[0][0]}:{'lesion' if lesion[studies[i]] else 'none'}" for i in keep]
    patients = keys.column("patient_pseudonym").to_pylist()
    m = evaluate_retrieval(vectors[keep], target, [patients[i] for i in keep], [studies[i] for i in keep])
    return _rows(m, "study", "class_and_lesion", "mean", code_version, run_id, now)
