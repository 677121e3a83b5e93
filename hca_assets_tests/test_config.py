from pathlib import Path

import pytest

from hca_assets.config import Settings, join


def test_join_local_and_uri() -> None:
    assert join("/data", "lake", "x") == str(Path("/data/lake/x"))
    assert join("s3://bucket/root/", "lake", "x") == "s3://bucket/root/lake/x"
    assert join("abfss://c@acct.dfs.core.windows.net/r", "restricted") == "abfss://c@acct.dfs.core.windows.net/r/restricted"


def test_zones_and_table_locations() -> None:
    s = Settings(data_dir="s3://b/hca")
    assert s.lake == "s3://b/hca/lake"
    assert s.table_uri("quarantine") == "s3://b/hca/lake/quarantine"
    assert s.table_uri("raw_instances", restricted=True) == "s3://b/hca/restricted/tables/raw_instances"
    assert s.quarantine.startswith(s.restricted)  # quarantined files may hold PHI
    assert s.raw_batches.startswith(s.restricted)


def test_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HCA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HCA_LANDING_DIR", str(tmp_path / "in"))
    monkeypatch.setenv("HCA_WORKERS", "3")
    s = Settings.from_env()
    assert (s.data_dir, s.landing, s.workers) == (str(tmp_path), str(tmp_path / "in"), 3)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("data_dir", "", "data_dir"), ("settle_seconds", -1, "settle_seconds"), ("workers", 0, "workers"),
])
def test_validation(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Settings(**{field: value})  # type: ignore[arg-type]


def test_dagster_resource_mirrors_settings_exactly(tmp_path: Path) -> None:
    import dataclasses

    from hca_assets.orchestration.resources import SettingsResource

    assert set(SettingsResource.model_fields) == {f.name for f in dataclasses.fields(Settings)}
    s = Settings(data_dir=str(tmp_path), workers=3, deid_options=("clean_desc",), embedder="azure")
    assert SettingsResource.from_settings(s).settings() == s
    assert SettingsResource(data_dir="x").settings() == Settings(data_dir="x")  # same defaults
