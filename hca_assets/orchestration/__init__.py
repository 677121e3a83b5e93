"""Dagster wiring shared by assets, checks and sensors: resources, partitions, automation, jobs, schedules, executors, code versions."""
