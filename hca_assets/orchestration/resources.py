"""Dagster resources: the settings (fields derived from :class:`~hca_assets.config.Settings`), the pseudonymisation
secret and each endpoint's or server's credentials, bound to the ``EnvVar``s :mod:`hca_assets.config.secrets` names."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import dagster as dg

from hca_assets.config import Settings
from hca_assets.config.secrets import ALERT_WEBHOOK, CXR, DEID_KEY, DICOMWEB, EXPORT, MI2, MIP, secret
from hca_assets.lake.keypin import lake_key


def _settings_fields() -> dict[str, Any]:
    """The resource's fields, one per :class:`Settings` field with its default (tuples as lists: Dagster config)."""
    hints = typing.get_type_hints(Settings)
    annotations: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        hint = hints[f.name]
        annotations[f.name] = list[str] if typing.get_origin(hint) is tuple else hint
        if f.name != "data_dir":  # the one field a deployment must give
            value = Settings.default(f)
            defaults[f.name] = list(value) if isinstance(value, tuple) else value
    return {"__annotations__": annotations, **defaults}


class _SettingsMethods:
    def settings(self) -> Settings:
        """These fields as :class:`Settings` (validated there)."""
        return Settings(**{f.name: (tuple(v) if isinstance(v := getattr(self, f.name), list) else v)
                           for f in dataclasses.fields(Settings)})

    @classmethod
    def from_settings(cls, settings: Settings) -> SettingsResource:
        """The resource holding ``settings`` (tuples as lists: Dagster config)."""
        return cls(**{k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(settings).items()})

    def code_version(self, context: dg.AssetExecutionContext) -> str:
        """The running asset's code_version under these settings (:mod:`hca_assets.orchestration.code_versions`); a one-line
        ``StaleDefinition`` if the loaded definition declares another, so its rows never carry a version it does not."""
        from hca_assets.orchestration.code_versions import require

        key = context.asset_key
        return require(key.to_user_string(), context.assets_def.code_versions_by_key.get(key), self.settings())


SettingsResource = type("SettingsResource", (_SettingsMethods, dg.ConfigurableResource), {
    "__doc__": ":class:`hca_assets.config.Settings` as a Dagster resource: its fields, derived from the dataclass.",
    "__module__": __name__, **_settings_fields()})


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


def _env_vars(resource: type[dg.ConfigurableResource], names: dict[str, str]) -> dg.ConfigurableResource:
    """``resource`` with each field whose secret is set bound to its ``EnvVar`` (an unset one stays empty)."""
    return resource(**{field: dg.EnvVar(env) for field, env in names.items() if secret(env)})


def default_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """Resources for the running deployment; secrets stay ``EnvVar``s (never shown in the UI)."""
    settings = settings or Settings.from_env()
    return {"storage": SettingsResource.from_settings(settings),
            "pseudonym_key": _env_vars(PseudonymKey, {"secret": DEID_KEY}),
            "embedding_endpoint": _env_vars(EmbeddingEndpoint, MI2 if secret(MI2["url"]) else {}),
            "segmentation_endpoint": _env_vars(SegmentationEndpoint, MIP if secret(MIP["url"]) else {}),
            "report_endpoint": _env_vars(ReportEndpoint, CXR if secret(CXR["url"]) else {}),
            "alert_webhook": _env_vars(AlertWebhook, {"url": ALERT_WEBHOOK}),
            "export_credentials": _env_vars(ExportCredentials, EXPORT),
            "dicomweb": _env_vars(DicomwebServer, DICOMWEB)}
