"""Segmentation: prompt strategies, the segmenter protocol, the weight-free local backend, measurements and
exports (NIfTI, DICOM SEG). No Dagster here."""
