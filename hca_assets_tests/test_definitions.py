import dagster as dg

from hca_assets.definitions import defs


def test_definitions_load_and_jobs_resolve() -> None:
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("ingest_job")
    assert job.partitions_def is not None
    assert {"landing_sensor", "automation_sensor", "run_success_audit", "run_failure_audit"} <= {s.name for s in defs.sensors or []}
    assert {s.name for s in defs.schedules or []} == {"nightly_evaluation", "weekly_full_backfill", "weekly_delta_maintenance"}
    assert defs.resolve_job_def("index_job").partitions_def is None
    checks = {(c.asset_key.to_user_string(), c.name) for c in defs.resolve_asset_graph().asset_check_keys}
    assert {(a, "great_expectations") for a in ("raw_dicom", "deid_staged", "deid_dicom", "images", "embeddings",
                                                  "labels", "segmentations", "retrieval_eval", "segmentation_eval")} <= checks
    assert checks >= {  # plus the dbt tests of the marts
        ("raw_dicom", "schema_matches"), ("raw_dicom", "sop_instance_uid_unique"), ("raw_dicom", "counts_add_up"),
        ("deid_staged", "no_phi_residue"), ("deid_staged", "uids_pseudonymised_consistently"),
        ("deid_staged", "counts_add_up"), ("deid_dicom", "published_files_match_table"),
        ("images", "few_constant_images"), ("images", "image_shapes"), ("images", "nifti_affine_matches_dicom"),
        ("embeddings", "vectors_valid"), ("faiss_index", "index_matches_embeddings"),
        ("retrieval_eval", "retrieval_above_floor"), ("segmentations", "masks_on_source_grid"),
        ("segmentations", "seg_files_valid"), ("segmentations", "expected_structures_present"),
        ("segmentation_eval", "dice_above_floor"),
    }
    warnings_only = {("images", "few_constant_images")}  # constant images are set aside; the batch goes on
    for asset in ("raw_dicom", "deid_staged", "deid_dicom", "images", "embeddings", "segmentations", "faiss_index",
                  "retrieval_eval", "segmentation_eval"):
        assert all(spec.blocking != ((asset, spec.name) in warnings_only)
                   for spec in defs.resolve_assets_def(asset).check_specs)
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} >= {"raw_dicom", "deid_staged", "deid_dicom",
                                                                                 "segmentations"}
    index = {k.to_user_string() for k in defs.resolve_job_def("index_job").asset_layer.selected_asset_keys}
    assert {k for k in index if not k.startswith("analytics/")} == {"faiss_index", "retrieval_eval", "segmentation_eval",
                                                                  "feedback", "retrieval_adapter", "zero_shot_eval"}
    assert {"analytics/study_catalog", "analytics/ingest_ledger"} <= index  # the dbt marts, rebuilt after every index


def test_the_code_location_loads_as_make_ui_loads_it(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`make ui` runs `dagster dev` from a fresh shell (no virtualenv on PATH): the code location must load there,
    with ``DAGSTER_IS_DEV_CLI`` as `dagster dev` sets it (the dbt project's parse then once looked for `dbt` on PATH,
    the load failed and the UI showed no assets)."""
    import subprocess
    import sys
    from pathlib import Path

    from hca_assets.config import Settings
    from hca_assets.orchestration.dagster_home import dagster_home
    from hca_assets.orchestration.dbt_project import DBT_DIR

    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # `make ui` unsets it: the data folder's home
    home = tmp_path / "home"  # the user's: nothing may be written there
    home.mkdir()
    settings = Settings(data_dir=str(tmp_path / "data"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "DAGSTER_IS_DEV_CLI": "1", "HCA_DATA_DIR": settings.data_dir,
           "DAGSTER_HOME": str(dagster_home(settings))}  # as `make ui` prepares it
    done = subprocess.run([str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=DBT_DIR.parent, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "All code locations passed validation" in done.stderr + done.stdout
    assert not list(home.rglob("*")), "the code location wrote into the home directory"
