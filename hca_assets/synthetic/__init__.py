"""Synthetic phantom studies with PHI-laden headers, burned-in text, labels and ground-truth masks."""

from hca_assets.synthetic.generator import KINDS, GenerationSummary, GeneratorOptions, generate

__all__ = ["KINDS", "GenerationSummary", "GeneratorOptions", "generate"]
