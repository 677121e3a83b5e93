import dagster as dg

from hca_assets.definitions import defs


def test_definitions_load_and_jobs_resolve() -> None:
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("ingest_job")
    assert job.partitions_def is not None
    assert {s.name for s in defs.sensors or []} == {"landing_sensor"}
    checks = defs.resolve_asset_graph().asset_check_keys
    assert {c.name for c in checks} == {"schema_matches", "sop_instance_uid_unique", "counts_add_up"}
    assert all(spec.blocking for spec in defs.resolve_assets_def("raw_dicom").check_specs)
