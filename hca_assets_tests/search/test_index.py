from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from hca_assets.search.index import IndexFiles, build_or_extend, load_index, search, self_recall, stable_id


def make(n: int, seed: int = 0) -> tuple[np.ndarray, pa.Table]:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    keys = pa.table({"key": [f"k{i}" for i in range(n)], "id": pa.array([stable_id("image", f"k{i}") for i in range(n)], pa.int64())})
    return v, keys


def test_build_extend_search_and_checksum(tmp_path: Path) -> None:
    files = IndexFiles.for_version(tmp_path, "local@stats-1+pre-2", "image")
    v, keys = make(300)
    first = build_or_extend(files, v[:200], keys.slice(0, 200), "local@stats-1+pre-2")
    assert (first["count"], first["mode"]) == (200, "built")
    grown = build_or_extend(files, v, keys, "local@stats-1+pre-2")
    assert (grown["count"], grown["mode"]) == (300, "extended by 100")
    again = build_or_extend(files, v, keys, "local@stats-1+pre-2")
    assert (again["count"], again["mode"]) == (300, "extended by 0")  # idempotent
    index, _ids, _manifest = load_index(files)
    sims, found = search(index, v[250:251], 3)
    assert found[0][0] == keys.column("id")[250].as_py() and sims[0][0] == pytest.approx(1.0)
    assert self_recall(index, v, keys.column("id").to_numpy()) == 1.0
    fewer = build_or_extend(files, v[:50], keys.slice(0, 50), "local@stats-1+pre-2")
    assert (fewer["count"], fewer["mode"]) == (50, "built")  # rows went away: rebuilt, not stale
    files.index.write_bytes(files.index.read_bytes() + b"x")
    with pytest.raises(ValueError, match="checksum"):
        load_index(files)


def test_versions_live_side_by_side(tmp_path: Path) -> None:
    a = IndexFiles.for_version(tmp_path, "local@stats-1+pre-2", "image")
    b = IndexFiles.for_version(tmp_path, "local@stats-2+pre-2", "image")
    assert a.root != b.root and a.root.parent == b.root.parent
    v, _keys = make(10)
    with pytest.raises(ValueError, match="duplicate ids"):
        build_or_extend(a, v[:2], pa.table({"id": pa.array([1, 1], pa.int64())}), "x")


def clustered(n: int, dim: int = 32, clusters: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    v = (centres[rng.integers(clusters, size=n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_ivf_is_accepted_only_with_recall_and_used_above_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hca_assets.search import index as index_module

    v = clustered(4000)
    ids = np.arange(4000, dtype=np.int64)
    ivf, facts = index_module.ivf_index(v, ids)
    assert facts["accepted"] and facts["recall_at_10"] >= 0.95 and ivf.nprobe == facts["nprobe"]
    assert index_module.recall_at_10(ivf, index_module.exact_index(v, ids), v[:50]) >= 0.9
    monkeypatch.setattr(index_module, "EXACT_LIMIT", 1000)
    keys = pa.table({"id": pa.array(ids)})
    manifest = build_or_extend(IndexFiles(tmp_path, "image"), v, keys, "x")
    assert manifest["type"] == "IndexIVFFlat" and manifest["approximate"]["accepted"]
    random = np.random.default_rng(3).normal(size=(4000, 32)).astype(np.float32)
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    monkeypatch.setattr(index_module, "MIN_RECALL", 1.01)  # an unattainable bar: exact search must be kept
    manifest = build_or_extend(IndexFiles(tmp_path / "b", "image"), random, keys, "x")
    assert manifest["type"] == "IndexIDMap2(IndexFlatIP)" and manifest["approximate"]["accepted"] is False
