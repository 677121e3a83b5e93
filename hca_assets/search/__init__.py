"""FAISS indexes and search (no Dagster here)."""
