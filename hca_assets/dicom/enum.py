"""Enumerations of the dicom domain."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DeidOption", "QuarantineReason"]


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
    NOT_REGULAR_FILE = "not_regular_file"  # a FIFO, socket or device node in the landing zone
    ENCODING_MISMATCH = "encoding_mismatch"  # file meta's transfer syntax contradicts the data set's encoding
    OUTPUT_UNREADABLE = "output_unreadable"  # the de-identified output did not read back as written


class DeidOption(StrEnum):
    """Profile options; the value is the Table E.1-1 column that carries the option's actions."""

    RETAIN_SAFE_PRIVATE = "rtn_safe_priv"
    RETAIN_UIDS = "rtn_uids"
    RETAIN_DEVICE_IDENTITY = "rtn_dev_id"
    RETAIN_INSTITUTION_IDENTITY = "rtn_inst_id"
    RETAIN_PATIENT_CHARACTERISTICS = "rtn_pat_chars"
    RETAIN_LONGITUDINAL_FULL_DATES = "rtn_long_full_dates"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "rtn_long_modif_dates"
    CLEAN_DESCRIPTORS = "clean_desc"
    CLEAN_STRUCTURED_CONTENT = "clean_struct_cont"
    CLEAN_GRAPHICS = "clean_graph"
