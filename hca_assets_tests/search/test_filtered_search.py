"""Metadata-filtered search (a SQL condition in the sandbox selects ids, FAISS searches only those) and study vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from PIL import Image

from hca_assets.cli import main
from hca_assets.config import Settings
from hca_assets.lake import read_table
from hca_assets.lake.schemas import EMBEDDINGS, SERIES_EMBEDDINGS
from hca_assets.lake.warehouse import QueryRefused
from hca_assets.models.study_vectors import study_vectors
from hca_assets.search.index import exact_index, ivf_index, search
from hca_assets.search.query import load_query_image, search_similar
from hca_assets_tests.builders import assert_one_line_user_error, small_index


def clustered(n: int, dim: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    v = (centres[rng.integers(20, size=n)] + 0.4 * rng.normal(size=(n, dim))).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["exact", "ivf"])
@pytest.mark.parametrize("keep", [0, 1, 37, 4000])
def test_search_among_allowed_ids_equals_brute_force(kind: str, keep: int) -> None:
    v = clustered(4000)
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 2**62, size=len(v), dtype=np.int64)  # hashed ids, as stable_id makes them
    index = exact_index(v, ids) if kind == "exact" else ivf_index(v, ids, train_size=2000, held_out=50)[0]
    allowed = rng.choice(ids, size=keep, replace=False)
    queries = v[:5] + 0.05
    sims, found = search(index, queries, 5, allowed)
    mask = np.isin(ids, allowed)
    for q, row_ids, row_sims in zip(queries, found, sims, strict=True):
        truth = np.argsort(-(v[mask] @ q), kind="stable")[:5]
        assert (row_ids >= 0).sum() == min(5, keep)  # never fewer than the filter allows, never one outside it
        assert set(row_ids[row_ids >= 0]) == set(ids[mask][truth].tolist())
        assert np.allclose(row_sims[: len(truth)], (v[mask] @ q)[truth], atol=1e-5)


@pytest.fixture
def indexed(tmp_path: Path) -> tuple[Settings, Path]:
    """Six CT images (three patients, series 2.25.100-102, one study) indexed; a query PNG (image 3)."""
    settings = Settings(data_dir=str(tmp_path / "data"))
    images = small_index(settings)
    Image.fromarray(images[3]).save(tmp_path / "query.png")
    return settings, tmp_path / "query.png"


def test_where_keeps_none_one_some_or_all(indexed: tuple[Settings, Path]) -> None:
    settings, png = indexed
    query = load_query_image(png)
    unfiltered = search_similar(settings, image=query, k=6)
    assert len(unfiltered) == 6 and unfiltered[0].sop_instance_uid == "2.25.3"
    assert search_similar(settings, image=query, k=5, where="modality = 'MR'") == []
    one = search_similar(settings, image=query, k=5, where="sop_instance_uid = '2.25.5'")
    assert [n.sop_instance_uid for n in one] == ["2.25.5"] and one[0].body_part == "CHEST"
    every = search_similar(settings, image=query, k=6, where="modality = 'CT' AND body_part = 'CHEST'")
    assert every == unfiltered
    some = search_similar(settings, image=query, k=5, where="patient_pseudonym = 'PSN1'")  # images 1 and 4
    assert sorted(n.sop_instance_uid for n in some) == ["2.25.1", "2.25.4"]
    assert some == [n for n in unfiltered if n.sop_instance_uid in {"2.25.1", "2.25.4"}]  # same order, same scores
    labelled = search_similar(settings, image=query, k=5, where="sop_instance_uid IN (SELECT sop_instance_uid FROM labels "
                                                                "WHERE patient_pseudonym = 'PSN2')")  # a PHI-free table
    assert sorted(n.sop_instance_uid for n in labelled) == ["2.25.2", "2.25.5"]
    with pytest.raises(QueryRefused, match="one SQL condition"):
        search_similar(settings, image=query, where="1=1; DROP TABLE images")


@pytest.mark.parametrize("where", [
    "1=1; DROP TABLE images",
    "id IN (SELECT 1 FROM read_csv('/etc/passwd'))",
    "sop_instance_uid IN (SELECT sop_instance_uid FROM raw_instances)",  # restricted: no view exists
    "1=1) UNION (SELECT 1",
    "1=1 ORDER BY id",
    "no_such_column = 1",
])
def test_malicious_or_broken_where_is_one_line_exit_2(where: str, indexed: tuple[Settings, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    settings, png = indexed
    monkeypatch.setenv("HCA_DATA_DIR", settings.data_dir)
    before = read_table(settings.table_uri("images")).num_rows
    result = CliRunner().invoke(main, ["search", str(png), "--where", where])
    assert_one_line_user_error(result)
    assert "--where refused" in result.stderr and "/etc/passwd" not in result.stdout
    assert read_table(settings.table_uri("images")).num_rows == before == 6
    if "raw_instances" in where:
        assert "raw_instances is restricted" in result.stderr


def test_cli_where_prints_only_kept_rows(indexed: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, png = indexed
    monkeypatch.setenv("HCA_DATA_DIR", settings.data_dir)
    result = CliRunner().invoke(main, ["search", str(png), "-k", "5", "--where", "series_instance_uid = '2.25.100'"])
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2 and all("series 2.25.100 " in line for line in result.stdout.splitlines())


def test_study_vector_is_the_mean_of_its_series_vectors() -> None:
    rng = np.random.default_rng(3)
    unit = rng.normal(size=(6, 8)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    base = {"patient_pseudonym": "PSN1", "code_version": "v", "frame": 0}
    # study A: a 3-slice CT volume (batch b1) and a planar CR image (batch b2); study B: one US image with 2 frames
    images = [{**base, "batch": "b1", "sop_instance_uid": f"ct{i}", "series_instance_uid": "ct", "study_instance_uid": "A",
               "modality": "CT", "vector": unit[i].tolist()} for i in range(3)]
    images += [{**base, "batch": "b2", "sop_instance_uid": "cr", "series_instance_uid": "cr", "study_instance_uid": "A",
                "modality": "CR", "vector": unit[3].tolist()}]
    images += [{**base, "batch": "b2", "sop_instance_uid": "us", "frame": f, "series_instance_uid": "us",
                "study_instance_uid": "B", "modality": "US", "vector": unit[4 + f].tolist()} for f in range(2)]
    volume = unit[5] * 0 + np.array([1, 0, 0, 0, 0, 0, 0, 0], np.float32)  # the series table's mean row wins
    series = pa.Table.from_pylist([{"batch": "b1", "series_instance_uid": "ct", "aggregation": how, "study_instance_uid": "A",
                                    "patient_pseudonym": "PSN1", "modality": "CT", "slices": 3, "code_version": "v",
                                    "vector": (volume if how == "mean" else -volume).tolist()} for how in ("mean", "max")],
                                  schema=SERIES_EMBEDDINGS)
    keys, vectors = study_vectors(pa.Table.from_pylist(images, schema=EMBEDDINGS), series)
    assert keys.select(["study_instance_uid", "modality", "series", "images"]).to_pylist() == [
        {"study_instance_uid": "A", "modality": "CR/CT", "series": 2, "images": 4},
        {"study_instance_uid": "B", "modality": "US", "series": 1, "images": 2}]
    expect_a = (volume + unit[3]) / np.linalg.norm(volume + unit[3])
    expect_b = (unit[4] + unit[5]) / np.linalg.norm(unit[4] + unit[5])
    assert np.allclose(vectors, [expect_a, expect_b], atol=1e-6)
