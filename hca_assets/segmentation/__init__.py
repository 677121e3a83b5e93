"""Segmentation: prompt strategies, the segmenter protocol, the weight-free local backend, measurements and
exports (NIfTI, DICOM SEG). No Dagster here."""

from hca_assets.config.settings import SEGMENTERS as BACKENDS  # the CLI's choices (cheap to import)

__all__ = ["BACKENDS"]
