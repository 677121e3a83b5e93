"""The code location: assets, checks, jobs, sensors and resources — wiring only."""

import dagster as dg

from hca_assets.assets.analytics import analytics, dbt_resource
from hca_assets.assets.catalog import series, studies
from hca_assets.assets.deid import deid_dicom, deid_staged
from hca_assets.assets.embeddings import embedding_drift, embeddings, labels
from hca_assets.assets.evaluation import feedback, segmentation_eval
from hca_assets.assets.export import export_asset
from hca_assets.assets.images import images
from hca_assets.assets.ingest import raw_dicom
from hca_assets.assets.reports import reports
from hca_assets.assets.search import faiss_index, retrieval_adapter, retrieval_eval, zero_shot_eval
from hca_assets.assets.segmentation import segmentations_asset
from hca_assets.checks.expectations import EXPECTATION_CHECKS
from hca_assets.config import Settings
from hca_assets.orchestration.code_versions import code_versions
from hca_assets.orchestration.executors import executor_def
from hca_assets.orchestration.jobs import index_job, ingest_job
from hca_assets.orchestration.resources import default_resources
from hca_assets.orchestration.schedules import SCHEDULE_JOBS, SCHEDULES
from hca_assets.sensors.dicomweb import dicomweb_sensor
from hca_assets.sensors.landing import automation_sensor, landing_sensor
from hca_assets.sensors.run_status import RUN_SENSORS


def versioned(assets: list[dg.AssetsDefinition], settings: Settings) -> list[dg.AssetsDefinition]:
    """``assets`` with the code_versions ``settings`` give them (:func:`hca_assets.orchestration.code_versions.code_versions`)."""
    versions = code_versions(settings)
    return [a.map_asset_specs(lambda s: s.replace_attributes(code_version=versions[s.key.to_user_string()]))
            if len(a.keys) == 1 and a.key.to_user_string() in versions else a for a in assets]


def build_defs(settings: Settings | None = None) -> dg.Definitions:
    """Definitions bound to ``settings`` (default: from the environment), code_versions and executor included."""
    settings = settings or Settings.from_env()
    return dg.Definitions(
        assets=versioned([raw_dicom, deid_staged, deid_dicom, images, embeddings, segmentations_asset(settings), labels,
                          faiss_index, retrieval_eval, segmentation_eval, analytics, series, studies,
                          export_asset(settings), reports, embedding_drift,
                          feedback, retrieval_adapter, zero_shot_eval], settings),
        asset_checks=EXPECTATION_CHECKS,
        jobs=[ingest_job, index_job, *SCHEDULE_JOBS],
        schedules=SCHEDULES,
        sensors=[landing_sensor, dicomweb_sensor, automation_sensor, *RUN_SENSORS],
        resources={**default_resources(settings), "dbt": dbt_resource()},
        executor=executor_def(settings.executor),
    )


defs = build_defs()
