"""images → embeddings → faiss_index → retrieval_eval through Dagster, and search over the result."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dagster as dg

from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.embeddings import embeddings, labels
from hca_assets.assets.images import images
from hca_assets.assets.ingest import raw_dicom
from hca_assets.assets.search import faiss_index, retrieval_eval
from hca_assets.config import Settings
from hca_assets.definitions import versioned
from hca_assets.lake import read_table
from hca_assets.lake import registry as tables
from hca_assets.orchestration.partitions import INGEST_BATCHES
from hca_assets.orchestration.resources import EmbeddingEndpoint, PseudonymKey, SettingsResource
from hca_assets.search.query import load_query_image, search_similar
from hca_assets.sources.claims import claim
from hca_assets.synthetic import generate
from hca_assets_tests.conftest import SMALL
from hca_assets_tests.stubs import Mi2Stub

PER_BATCH = [raw_dicom, deid_staged, deid_dicom, images, embeddings, labels]


def test_images_embeddings_index_eval_and_search(settings: Settings) -> None:
    two_patients = dataclasses.replace(SMALL, patients=2, seed=11)  # evaluation needs other patients to retrieve
    generate(Path(settings.landing), Path(settings.truth_file).parent, two_patients)
    batch = claim(Path(settings.landing), Path(settings.raw_batches), settle_seconds=0)
    assert batch is not None
    resources = {"storage": SettingsResource.from_settings(settings), "pseudonym_key": PseudonymKey(),
                 "embedding_endpoint": EmbeddingEndpoint()}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
        per_batch = dg.materialize(PER_BATCH, instance=instance, partition_key=batch.key, resources=resources)
        assert per_batch.success and all(e.passed for e in per_batch.get_asset_check_evaluations())
        for _ in range(2):  # the second run extends the index by nothing and appends a new evaluation
            whole = dg.materialize([faiss_index, retrieval_eval], instance=instance, resources=resources,
                                   selection=[faiss_index, retrieval_eval])
            assert whole.success and all(e.passed for e in whole.get_asset_check_evaluations())
            for event in [*per_batch.get_asset_materialization_events(), *whole.get_asset_materialization_events()]:
                assert {"table_uri", "delta_version", "dagster/row_count"} <= set(event.materialization.metadata)
    image_rows = read_table(settings.table_uri("images")).to_pylist()
    assert len(image_rows) == 2 * SMALL.instances_per_patient
    assert all((Path(settings.images) / r["path"]).is_file() for r in image_rows)
    volumes = read_table(settings.table_uri("volumes")).to_pylist()
    assert sorted(v["modality"] for v in volumes) == ["CT", "CT", "MR", "MR"]
    assert read_table(settings.table_uri("embeddings")).num_rows == len(image_rows)
    assert {r["aggregation"] for r in read_table(settings.table_uri("series_embeddings")).to_pylist()} == {
        "mean", "max", "median", "std"}
    evaluations = read_table(settings.table_uri("evaluations")).to_pylist()
    assert len({r["run_id"] for r in evaluations}) == 2
    builds = sorted(tables.INDEX_BUILDS.read(settings).to_pylist(), key=lambda r: (r["built_at"], r["level"]))
    assert [(b["level"], b["mode"]) for b in builds] == [("image", "built"), ("series", "built"), ("study", "built"),
                                                         ("image", "extended by 0"), ("series", "extended by 0"),
                                                         ("study", "built")]  # studies: always rebuilt (few)
    assert builds[2]["ntotal"] == len({r["study_instance_uid"] for r in image_rows}) == 8
    assert builds[0]["ntotal"] == len(image_rows) and builds[0]["recall_at_10"] is None  # exact: nothing to measure
    assert all((Path(settings.indexes) / b["path"]).is_file() for b in builds)
    assert {"P@1", "P@5", "P@10", "mAP", "top1_accuracy", "top5_majority_accuracy"} <= {r["metric"] for r in evaluations}
    ct = next(r for r in image_rows if r["modality"] == "CT")
    found = search_similar(settings, image=load_query_image(Path(settings.images) / ct["path"]), k=3)
    mine = next(n for n in found if n.sop_instance_uid == ct["sop_instance_uid"])  # itself, among near-identical slices
    assert mine.similarity > 0.999 and found[0].similarity >= mine.similarity - 1e-5
    assert all(n.modality == "CT" for n in found)
    series = search_similar(settings, image=load_query_image(Path(settings.images) / ct["path"]), k=2, level="series")
    assert [n.modality for n in series] == ["CT", "CT"]  # a CT slice finds the CT volumes first
    assert ct["series_instance_uid"] in {n.series_instance_uid for n in series}
    studies = search_similar(settings, image=load_query_image(Path(settings.images) / ct["path"]), k=8, level="study")
    assert [n.modality for n in studies[:2]] == ["CT", "CT"] and len(studies) == 8  # the CT studies first
    assert ct["study_instance_uid"] in {n.study_instance_uid for n in studies[:2]}
    assert all(n.series_instance_uid is None and n.labels for n in studies)
    mr = search_similar(settings, image=load_query_image(Path(settings.images) / ct["path"]), k=8, level="study",
                        where="modality = 'MR' AND body_part = 'HEAD'")
    assert [n.modality for n in mr] == ["MR", "MR"] and [n.similarity for n in mr] == [
        n.similarity for n in studies if n.modality == "MR"]  # the same scores, only the kept studies
    study_eval = [r for r in evaluations if r["level"] == "study" and r["label"] == "overall"]
    assert {r["metric"] for r in study_eval} >= {"P@1", "P@5", "mAP"} and all(r["queries"] == 8 for r in study_eval)

    # the same batch re-embedded through the MedImageInsight backend (local stub server), as configured by env
    azure = dataclasses.replace(settings, embedder="azure")
    with Mi2Stub() as stub, dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INGEST_BATCHES, [batch.key])
        result = dg.materialize(versioned([embeddings], azure), instance=instance, partition_key=batch.key, resources={
            "storage": SettingsResource.from_settings(azure), "embedding_endpoint": EmbeddingEndpoint(url=stub.url, key=stub.key)})
        assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
        assert stub.rows_seen == len(image_rows)
    rows = read_table(settings.table_uri("embeddings")).to_pylist()
    azure_rows = [r for r in rows if r["code_version"] == "azure-mi2@medimageinsight-1+pre-2"]
    assert len(azure_rows) == len(image_rows) and all(len(r["vector"]) == 1024 for r in azure_rows)
    assert len(rows) == 2 * len(image_rows)  # the local version's rows stay next to the new version's


def test_unrenderable_instance_is_quarantined_not_fatal(tmp_path: Path) -> None:
    from hca_assets.stages.images import render_batch, render_quarantine

    (tmp_path / "deid" / "b1").mkdir(parents=True)
    (tmp_path / "deid" / "b1" / "broken.dcm").write_bytes(b"DICM but not really")
    row = {"sop_instance_uid": "2.25.1", "series_instance_uid": "2.25.2", "study_instance_uid": "2.25.3",
           "patient_pseudonym": "PSN1", "modality": "CT", "path": "b1/broken.dcm", "sha256": "ab" * 32}
    out = render_batch("b1", [row], tmp_path / "deid", tmp_path / "images")
    assert out.images.num_rows == 0 and [sop for sop, _ in out.failed] == ["2.25.1"]
    q = render_quarantine("b1", out.failed, [row]).to_pylist()
    assert q[0]["reason"] == "unrenderable" and q[0]["stage"] == "images" and "broken" in q[0]["kept_as"]
