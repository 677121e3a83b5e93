"""Search the FAISS index with an image (DICOM or PNG) or, where the backend embeds text, a text; optionally only
among the indexed rows a SQL condition over the lake keeps (``where``: DuckDB in the sandbox, then FAISS IDSelector)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from hca_assets._infra.storage import pull
from hca_assets.config import Settings
from hca_assets.dicom.io import read_dataset
from hca_assets.dicom.pixels import IMAGE_SIZE, display_frames, letterbox
from hca_assets.lake import registry as tables
from hca_assets.lake.warehouse import select_ids
from hca_assets.models import embedder_code_version, get_embedder
from hca_assets.search.index import LEVELS, IndexFiles, load_index, search

__all__ = ["Neighbour", "filter_view", "load_query_image", "search_similar"]


@dataclass(frozen=True)
class Neighbour:
    similarity: float
    study_instance_uid: str
    series_instance_uid: str | None  # None at study level
    sop_instance_uid: str | None  # None at series and study level
    modality: str  # at study level, the study's modalities joined by '/'
    body_part: str | None
    labels: str | None  # class / lesion, where labelled


def load_query_image(path: Path) -> np.ndarray:
    """A query as the pipeline's images are made: DICOM (first frame, windowed) or PNG/JPEG, letterboxed."""
    data = path.read_bytes()
    if data[128:132] == b"DICM":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = next(display_frames(read_dataset(data))[1])
    else:
        image = np.asarray(Image.open(path).convert("L"))
    return letterbox(image, IMAGE_SIZE)


def search_similar(settings: Settings, *, image: np.ndarray | None = None, text: str | None = None, k: int = 5,
                   level: str = "image", where: str | None = None) -> list[Neighbour]:
    """The ``k`` nearest indexed images (or 3D series, or studies) to an image or a text query; with ``where`` (a SQL
    condition on the columns of :func:`filter_view`, e.g. ``"modality = 'CT' AND body_part = 'CHEST'"``), among
    the rows it keeps only. Raises ``QueryRefused`` (a ValueError) for a condition the sandbox refuses."""
    if (image is None) == (text is None):
        raise ValueError("give exactly one of `image` and `text`")
    if level not in LEVELS:
        raise ValueError(f"`level` must be one of {', '.join(LEVELS)}, got {level!r}")
    embedder = get_embedder(settings)
    if text is not None and not embedder.supports_text:
        raise ValueError(f"the {embedder.name!r} backend cannot embed text; choose a backend that can (HCA_EMBEDDER)")
    version = embedder_code_version(settings)
    files = IndexFiles.for_version(Path(settings.indexes), version, level)
    pull(settings, files.manifest.parent)  # object-store root: the index as last published
    if not files.manifest.exists():
        raise FileNotFoundError(f"no {level} index for {version}: materialize faiss_index first")
    index, ids, _ = load_index(files)
    series_facts = _series_facts(settings)
    body_parts = _body_parts(series_facts)
    allowed = None
    if where is not None:
        allowed = select_ids(settings, filter_view(ids, level, body_parts), where)
        if len(allowed) == 0:
            return []
        allowed = None if len(allowed) == ids.num_rows else allowed  # kept every row: no selector needed
    query = embedder.embed([image]) if image is not None else embedder.embed_text([text or ""])
    sims, found = search(index, query, k, allowed)
    by_id = {r["id"]: r for r in ids.to_pylist()}
    labels = _labels(settings, series_facts)
    out = []
    for sim, i in zip(sims[0], found[0], strict=True):
        if i < 0:
            continue
        row = by_id[int(i)]
        sop, series = row.get("sop_instance_uid"), row.get("series_instance_uid")
        key = series or row["study_instance_uid"]
        out.append(Neighbour(float(sim), row["study_instance_uid"], series, sop, row["modality"],
                             body_parts.get(key), labels.get(sop or key)))
    return out


def filter_view(ids: pa.Table, level: str, body_parts: dict[str, str | None]) -> pa.Table:
    """The rows a ``where`` condition sees (view ``indexed``): the index's id table (keys of each indexed image,
    series or study: UIDs, patient pseudonym, modality, batch …) and ``body_part`` ('/'-joined at study level)."""
    key = "study_instance_uid" if level == "study" else "series_instance_uid"
    keys = ids.column(key).unique().to_pylist()
    parts = pa.table({key: keys, "body_part": [body_parts.get(k) for k in keys]},
                     schema=pa.schema([(key, pa.string()), ("body_part", pa.string())]))
    return ids.join(parts, keys=key, join_type="left outer")


def _series_facts(settings: Settings) -> dict[str, tuple[str, str | None]]:
    """series → (study, body part), from the ``images`` table."""
    table = tables.IMAGES.read(settings, columns=["series_instance_uid", "study_instance_uid", "body_part"])
    return {s: (st, bp) for s, st, bp in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True)}


def _body_parts(series_facts: dict[str, tuple[str, str | None]]) -> dict[str, str | None]:
    """Body part by series, and by study (its series' body parts, sorted, joined by '/')."""
    studies: dict[str, set[str]] = {}
    for study, part in series_facts.values():
        studies.setdefault(study, set()).update([part] if part else [])
    return {s: part for s, (_, part) in series_facts.items()} | {s: "/".join(sorted(p)) or None for s, p in studies.items()}


def _labels(settings: Settings, series_facts: dict[str, tuple[str, str | None]]) -> dict[str, str]:
    """Label text by instance, by series (its first instance's class) and by study (its series' labels)."""
    out: dict[str, str] = {}
    for r in tables.LABELS.read(settings).to_pylist():
        text = f"{r['class_label']}{' lesion:' + r['lesion_type'] if r['lesion_present'] else ''}"
        out[r["sop_instance_uid"]] = text
        out.setdefault(r["series_instance_uid"], f"{r['class_label']}{' (study with lesion)' if r['study_has_lesion'] else ''}")
    studies: dict[str, set[str]] = {}
    for series, (study, _) in series_facts.items():
        if series in out:
            studies.setdefault(study, set()).add(out[series])
    return out | {study: " / ".join(sorted(texts)) for study, texts in studies.items()}
