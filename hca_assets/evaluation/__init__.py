"""Evaluation metrics (no Dagster here)."""
