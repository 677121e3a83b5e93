"""The secrets: endpoints' URLs and keys, credentials and the pseudonymisation key. They are not settings: Dagster
resources take them as ``EnvVar`` (never shown in the UI or stored in run config), and the CLI reads them here."""

from __future__ import annotations

import os

__all__ = ["ALERT_WEBHOOK", "CXR", "DEID_KEY", "DICOMWEB", "EXPORT", "MI2", "MIP", "secret"]

DEID_KEY = "HCA_DEID_KEY"  # the keyed-hash secret (else restricted/hca.key)
MI2 = {"url": "HCA_MI2_ENDPOINT", "key": "HCA_MI2_KEY"}  # MedImageInsight endpoint
MIP = {"url": "HCA_MIP_ENDPOINT", "key": "HCA_MIP_KEY"}  # MedImageParse endpoint
CXR = {"url": "HCA_CXR_ENDPOINT", "key": "HCA_CXR_KEY"}  # CXRReportGen endpoint
EXPORT = {"user": "HCA_EXPORT_USER", "password": "HCA_EXPORT_PASSWORD", "token": "HCA_EXPORT_TOKEN"}  # STOW-RS auth
DICOMWEB = {"url": "HCA_DICOMWEB_URL", "user": "HCA_DICOMWEB_USER", "password": "HCA_DICOMWEB_PASSWORD",
            "token": "HCA_DICOMWEB_TOKEN"}  # the PACS the DICOMweb sensor pulls from
ALERT_WEBHOOK = "HCA_ALERT_WEBHOOK"  # where run-failure alerts are POSTed (such URLs often carry a token)


def secret(name: str) -> str:
    """The secret in variable ``name``, or "" when it is not set (the caller then says what is missing)."""
    return os.environ.get(name, "")
