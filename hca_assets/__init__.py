"""hca_assets: an open, local-first medical-imaging data platform built on Dagster."""

__version__ = "0.1.0"
