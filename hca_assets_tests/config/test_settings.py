"""Settings: zones and table locations, every field read from its variable and checked, the resource derived
from the fields, the generated configuration page, and no other reader of HCA_* variables."""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from pathlib import Path

import pytest

import hca_assets
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


def _other_value(field: dataclasses.Field[object], hint: object) -> tuple[str, object]:
    """A valid non-default value of ``field`` as environment text, and as the field holds it."""
    special = {"data_dir": ("/srv/hca", "/srv/hca"), "executor": ("celery", "celery"), "segmenter": ("onnx", "onnx"), "embedder": ("efficientnet", "efficientnet"),
               "ocr_mode": ("off", "off"), "dicomweb_cursor": ("orthanc-changes", "orthanc-changes"),
               "priority_rules": ("STAT:folder=stat", "STAT:folder=stat"),
               "export_destination": ("dicom://PACS@pacs.local:104", "dicom://PACS@pacs.local:104"),
               "cstore_max_per_caller": ("5", 5), "vacuum_retention_hours": ("200", 200.0),
               "sql_memory_mb": ("4096", 4096), "drift_max_samples": ("500", 500)}
    if field.name in special:
        return special[field.name]
    if hint is bool:
        return "0", False
    if hint is int:
        return "7", 7
    if hint is float:
        return "0.5", 0.5
    if typing.get_origin(hint) is tuple:
        return "a, b", ("a", "b")
    return "some-value", "some-value"


def test_every_setting_is_read_from_its_variable() -> None:
    """Each field's variable (HCA_<NAME> unless it names another) sets it, parsed as its type; nothing hand-listed."""
    hints = typing.get_type_hints(Settings)
    fields = dataclasses.fields(Settings)
    environ, expected = {}, {}
    for f in fields:
        hint = hints[f.name]
        if isinstance(hint, types.UnionType):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        environ[Settings.env_name(f)], expected[f.name] = _other_value(f, hint)
    settings = Settings.from_env(environ)
    assert len(fields) > 50 and {f.name: getattr(settings, f.name) for f in fields} == expected
    assert Settings.env_name(next(f for f in fields if f.name == "ocr_mode")) == "HCA_DEID_OCR"  # names kept for users


def test_unset_and_empty_variables_keep_defaults_and_bad_ones_name_their_variable() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"HCA_WORKERS": "", "HCA_LANDING_DIR": ""}) == Settings()
    assert Settings.from_env({"HCA_DEID_OPTIONS": ""}).deid_options == ()  # set and empty: the Basic Profile alone
    with pytest.raises(ValueError, match="HCA_WORKERS must be an integer"):
        Settings.from_env({"HCA_WORKERS": "two"})
    with pytest.raises(ValueError, match="`segmenter` must be one of"):
        Settings.from_env({"HCA_SEGMENTER": "gpu"})


def test_the_configuration_page_is_generated_from_the_fields() -> None:
    """docs/configuration.md is what `make docs` writes: a setting added or changed shows there, with its default."""
    from hca_assets.config.reference import reference_markdown

    page = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    assert page == reference_markdown(), "docs/configuration.md is stale: run `make docs`"
    assert all(f"`{Settings.env_name(f)}`" in page and f.metadata["meaning"] for f in dataclasses.fields(Settings))


def test_nothing_but_the_settings_reads_hca_variables() -> None:
    """Outside hca_assets/config no code reads an HCA_* variable from the environment (secrets are named in
    config.secrets and reach Dagster as EnvVars)."""
    package = Path(hca_assets.__file__).parent
    readers = []
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] == "config":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv", "environ.get"):
                if node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("HCA_"):
                    readers.append(f"{path.relative_to(package)}:{node.lineno}")
            if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                key = node.slice
                if isinstance(key, ast.Constant) and str(key.value).startswith("HCA_"):
                    readers.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not readers, f"HCA_* read outside the settings: {readers}"
