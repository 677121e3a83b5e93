"""Dagster resources: storage settings and the pseudonymisation secret."""

from __future__ import annotations

import dataclasses
import os

import dagster as dg

from hca_assets.config import Settings
from hca_assets.keys import KEY_ENV
from hca_assets.lake.keypin import lake_key


class HcaStorage(dg.ConfigurableResource):  # type: ignore[misc]
    """:class:`hca_assets.config.Settings` as a Dagster resource (same fields, defaults taken from it)."""

    data_dir: str
    landing_dir: str | None = None
    settle_seconds: float = Settings.settle_seconds
    handoff_seconds: float = Settings.handoff_seconds
    max_resumes: int = Settings.max_resumes
    workers: int = Settings.workers
    deid_options: list[str] = list(Settings.deid_options)  # noqa: RUF012 - pydantic copies field defaults
    ocr_mode: str = Settings.ocr_mode
    deid_net: bool = Settings.deid_net
    deid_net_every: int = Settings.deid_net_every
    deid_check_pixels: int = Settings.deid_check_pixels
    uid_map: str | None = None
    patient_map: str | None = None
    embedder: str = Settings.embedder
    segmenter: str = Settings.segmenter
    mip_concurrency: int = Settings.mip_concurrency
    mip_model_version: str = Settings.mip_model_version
    mip_deployment: str | None = None
    cxr_model_version: str = Settings.cxr_model_version
    cxr_deployment: str | None = None
    seg_onnx_model: str | None = None
    seg_onnx_labels: str | None = None
    eval_min_p5: float = Settings.eval_min_p5
    seg_min_dice: float = Settings.seg_min_dice
    seg_reference_dir: str | None = None
    max_constant_fraction: float = Settings.max_constant_fraction
    max_pixels: int = Settings.max_pixels
    max_file_bytes: int = Settings.max_file_bytes
    file_timeout_seconds: float = Settings.file_timeout_seconds
    priority_rules: str = Settings.priority_rules
    export_destination: str = Settings.export_destination
    export_calling_ae: str = Settings.export_calling_ae
    export_retries: int = Settings.export_retries
    vacuum_retention_hours: float = Settings.vacuum_retention_hours
    executor: str = Settings.executor
    work_dir: str | None = None
    cstore_stable_seconds: float = Settings.cstore_stable_seconds
    cstore_max_associations: int = Settings.cstore_max_associations
    cstore_max_per_caller: int = Settings.cstore_max_per_caller
    dicomweb_cursor: str = Settings.dicomweb_cursor
    dicomweb_lookback_days: int = Settings.dicomweb_lookback_days
    dicomweb_retries: int = Settings.dicomweb_retries
    dicomweb_backoff_seconds: float = Settings.dicomweb_backoff_seconds
    dicomweb_timeout_seconds: float = Settings.dicomweb_timeout_seconds
    drift_reference_batches: int = Settings.drift_reference_batches
    drift_alpha: float = Settings.drift_alpha
    drift_min_mmd2: float = Settings.drift_min_mmd2
    drift_permutations: int = Settings.drift_permutations
    drift_max_samples: int = Settings.drift_max_samples
    ood_k: int = Settings.ood_k
    ood_quantile: float = Settings.ood_quantile
    ood_max_fraction: float = Settings.ood_max_fraction
    sql_timeout_seconds: float = Settings.sql_timeout_seconds
    sql_memory_mb: int = Settings.sql_memory_mb
    sql_max_rows: int = Settings.sql_max_rows

    @classmethod
    def from_settings(cls, settings: Settings) -> HcaStorage:
        fields = dataclasses.asdict(settings)
        return cls(**{**fields, "deid_options": list(settings.deid_options)})

    def settings(self) -> Settings:
        return Settings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Settings)} | {
            "deid_options": tuple(self.deid_options)})

    def code_version(self, context: dg.AssetExecutionContext) -> str:
        """The running asset's code_version under these settings (:mod:`hca_assets.versions`); a one-line
        ``StaleDefinition`` if the loaded definition declares another, so its rows never carry a version it does not."""
        from hca_assets.versions import require

        key = context.asset_key
        return require(key.to_user_string(), context.assets_def.code_versions_by_key.get(key), self.settings())


class PseudonymKey(dg.ConfigurableResource):  # type: ignore[misc]
    """The keyed-hash secret: ``HCA_DEID_KEY`` through ``EnvVar``, else the 0600 key file under restricted/."""

    secret: str = ""

    def key(self, settings: Settings) -> bytes:
        """The secret, refused (``KeyRefused``) unless it is the key the lake is pinned to; pins it on first use."""
        return lake_key(settings, self.secret or None)


class EmbeddingEndpoint(dg.ConfigurableResource):  # type: ignore[misc]
    """URL and key of a remote embedding endpoint (``HCA_MI2_ENDPOINT`` / ``HCA_MI2_KEY`` through ``EnvVar``)."""

    url: str = ""
    key: str = ""


class ReportEndpoint(dg.ConfigurableResource):  # type: ignore[misc]
    """URL and key of the CXRReportGen endpoint (``HCA_CXR_ENDPOINT`` / ``HCA_CXR_KEY`` through ``EnvVar``);
    empty: not configured, and the ``reports`` asset is skipped."""

    url: str = ""
    key: str = ""


class SegmentationEndpoint(dg.ConfigurableResource):  # type: ignore[misc]
    """URL and key of the MedImageParse endpoint (``HCA_MIP_ENDPOINT`` / ``HCA_MIP_KEY`` through ``EnvVar``)."""

    url: str = ""
    key: str = ""


class DicomwebServer(dg.ConfigurableResource):  # type: ignore[misc]
    """The PACS the DICOMweb sensor pulls from: ``HCA_DICOMWEB_URL`` and ``HCA_DICOMWEB_USER`` /
    ``HCA_DICOMWEB_PASSWORD`` (basic) or ``HCA_DICOMWEB_TOKEN`` (bearer) through ``EnvVar``; empty url: not configured."""

    url: str = ""
    user: str = ""
    password: str = ""
    token: str = ""


class ExportCredentials(dg.ConfigurableResource):  # type: ignore[misc]
    """STOW-RS auth of the export destination: basic (``HCA_EXPORT_USER`` / ``HCA_EXPORT_PASSWORD``) or bearer
    (``HCA_EXPORT_TOKEN``), each through ``EnvVar``; empty: no auth."""

    user: str = ""
    password: str = ""
    token: str = ""


class AlertWebhook(dg.ConfigurableResource):  # type: ignore[misc]
    """Where run-failure alerts are POSTed (``HCA_ALERT_WEBHOOK`` through ``EnvVar``: such URLs often carry a
    token); empty: alerts are only logged."""

    url: str = ""


def default_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """Resources for the running deployment; the secret stays an ``EnvVar`` (never shown in the UI)."""
    settings = settings or Settings.from_env()
    key = PseudonymKey(secret=dg.EnvVar(KEY_ENV)) if os.environ.get(KEY_ENV) else PseudonymKey()
    endpoint = (EmbeddingEndpoint(url=dg.EnvVar("HCA_MI2_ENDPOINT"), key=dg.EnvVar("HCA_MI2_KEY"))
                if os.environ.get("HCA_MI2_ENDPOINT") else EmbeddingEndpoint())
    mip = (SegmentationEndpoint(url=dg.EnvVar("HCA_MIP_ENDPOINT"), key=dg.EnvVar("HCA_MIP_KEY"))
           if os.environ.get("HCA_MIP_ENDPOINT") else SegmentationEndpoint())
    export = ExportCredentials(**{f: dg.EnvVar(f"HCA_EXPORT_{f.upper()}") for f in ("user", "password", "token")
                                  if os.environ.get(f"HCA_EXPORT_{f.upper()}")})
    cxr = (ReportEndpoint(url=dg.EnvVar("HCA_CXR_ENDPOINT"), key=dg.EnvVar("HCA_CXR_KEY"))
           if os.environ.get("HCA_CXR_ENDPOINT") else ReportEndpoint())
    alert = AlertWebhook(url=dg.EnvVar("HCA_ALERT_WEBHOOK")) if os.environ.get("HCA_ALERT_WEBHOOK") else AlertWebhook()
    dicomweb = DicomwebServer(**{f: dg.EnvVar(f"HCA_DICOMWEB_{f.upper()}") for f in ("url", "user", "password", "token")
                                 if os.environ.get(f"HCA_DICOMWEB_{f.upper()}")})
    return {"storage": HcaStorage.from_settings(settings), "pseudonym_key": key, "embedding_endpoint": endpoint,
            "segmentation_endpoint": mip, "report_endpoint": cxr, "alert_webhook": alert, "export_credentials": export, "dicomweb": dicomweb}
