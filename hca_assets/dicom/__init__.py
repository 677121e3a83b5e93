"""DICOM I/O, validation and (later) de-identification and pixel processing — no Dagster here."""

from hca_assets.dicom.enum import QuarantineReason
from hca_assets.dicom.io import InstanceInfo, InvalidInstance, inspect_bytes, inspect_file

__all__ = ["InstanceInfo", "InvalidInstance", "QuarantineReason", "inspect_bytes", "inspect_file"]
