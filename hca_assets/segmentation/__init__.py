"""Segmentation: prompt strategies, the segmenter protocol, the weight-free local backend, measurements and
exports (NIfTI, DICOM SEG). No Dagster here."""

BACKENDS = ("local", "azure", "onnx")  # the segmenter protocol's backends (cheap to import: the CLI's choices)
