"""Enumerations of the dicom domain."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["QuarantineReason"]


class QuarantineReason(StrEnum):
    """Why an input was set aside instead of ingested; the code lands in the ``quarantine`` table."""

    EMPTY_FILE = "empty_file"
    NOT_DICOM = "not_dicom"
    TRUNCATED = "truncated"
    NO_PIXEL_DATA = "no_pixel_data"
    MISSING_UID = "missing_uid"
    MISSING_MODALITY = "missing_modality"
    UNDECODABLE_PIXELS = "undecodable_pixels"
    DUPLICATE_INSTANCE = "duplicate_instance"
    SOP_UID_CONFLICT = "sop_uid_conflict"
    UNREADABLE = "unreadable"
    INTERNAL_ERROR = "internal_error"
    FILE_TOO_LARGE = "file_too_large"
    TOO_MANY_PIXELS = "too_many_pixels"
    TIMEOUT = "timeout"
    WORKER_DIED = "worker_died"
    DEID_FAILED = "deid_failed"
    PHI_RESIDUE = "phi_residue"
    BURNED_IN_UNVERIFIED = "burned_in_unverified"
    UNRENDERABLE = "unrenderable"
    SYMLINK_REFUSED = "symlink_refused"
    HIDDEN_NAME = "hidden_name"
