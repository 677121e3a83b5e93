"""Dagster sensors: the landing zone, the DICOMweb poller and run status (audit log, run stats, alerts)."""
