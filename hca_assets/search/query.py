"""Search the FAISS index with an image (DICOM or PNG) or, where the backend embeds text, a text."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hca_assets.config import Settings
from hca_assets.dicom.io import read_dataset
from hca_assets.dicom.pixels import IMAGE_SIZE, display_frames, letterbox
from hca_assets.lake import registry as tables
from hca_assets.models import embedder_code_version, get_embedder
from hca_assets.search.index import IndexFiles, load_index, search
from hca_assets.storage import pull

__all__ = ["Neighbour", "load_query_image", "search_similar"]


@dataclass(frozen=True)
class Neighbour:
    similarity: float
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str | None  # None at series level
    modality: str
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
                   level: str = "image") -> list[Neighbour]:
    """The ``k`` nearest indexed images (or 3D series) to an image or a text query."""
    if (image is None) == (text is None):
        raise ValueError("give exactly one of `image` and `text`")
    if level not in ("image", "series"):
        raise ValueError(f"`level` must be 'image' or 'series', got {level!r}")
    embedder = get_embedder(settings.embedder)
    if text is not None and not embedder.supports_text:
        raise ValueError(f"the {embedder.name!r} backend cannot embed text; choose a backend that can (HCA_EMBEDDER)")
    version = embedder_code_version(settings.embedder)
    files = IndexFiles.for_version(Path(settings.indexes), version, level)
    pull(settings, files.manifest.parent)  # object-store root: the index as last published
    if not files.manifest.exists():
        raise FileNotFoundError(f"no {level} index for {version}: materialize faiss_index first")
    query = embedder.embed([image]) if image is not None else embedder.embed_text([text or ""])
    index, ids, _ = load_index(files)
    sims, found = search(index, query, k)
    by_id = {r["id"]: r for r in ids.to_pylist()}
    labels = _labels(settings)
    out = []
    for sim, i in zip(sims[0], found[0], strict=True):
        if i < 0:
            continue
        row = by_id[int(i)]
        sop = row.get("sop_instance_uid")
        out.append(Neighbour(float(sim), row["study_instance_uid"], row["series_instance_uid"], sop, row["modality"],
                             _body_parts(settings).get(row["series_instance_uid"]),
                             labels.get(sop or row["series_instance_uid"])))
    return out


def _labels(settings: Settings) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in tables.LABELS.read(settings).to_pylist():
        text = f"{r['class_label']}{' lesion:' + r['lesion_type'] if r['lesion_present'] else ''}"
        out[r["sop_instance_uid"]] = text
        out.setdefault(r["series_instance_uid"], f"{r['class_label']}{' (study with lesion)' if r['study_has_lesion'] else ''}")
    return out


def _body_parts(settings: Settings) -> dict[str, str | None]:
    table = tables.IMAGES.read(settings, columns=["series_instance_uid", "body_part"])
    return dict(zip(table.column("series_instance_uid").to_pylist(), table.column("body_part").to_pylist(), strict=True))
