"""The hca command: generate, sql (formats, restricted zone), and the demo end to end."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner

from hca_assets.cli import DEMO_MARKER, main
from hca_assets.config import Settings
from hca_assets.lake import discover_tables, read_table
from hca_assets_tests.conftest import SMALL, manifest_strings


def test_generate_and_sql_formats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "data" / "dagster_home"))
    monkeypatch.setenv("HCA_SEG_MIN_DICE", "0.3")  # 64² × 8 phantoms are too coarse for the 0.8 default floor
    runner = CliRunner()
    out = runner.invoke(main, ["generate", "--patients", "1", "--out", str(tmp_path / "data" / "landing"),
                               "--ct-slices", "8", "--ct-size", "64"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "data" / "restricted" / "synthetic_truth" / "phi_manifest.json").is_file()
    ingest = runner.invoke(main, ["ingest", "--settle-seconds", "0"])
    assert ingest.exit_code == 0, ingest.output
    assert "succeeded" in ingest.output

    query = "select modality, count(*) as n from raw_instances group by 1 order by 1"
    denied = runner.invoke(main, ["sql", query])
    assert denied.exit_code == 2 and "pass --restricted" in denied.stderr
    as_csv = runner.invoke(main, ["sql", query, "--restricted", "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    counts = {r["modality"]: int(r["n"]) for r in csv.DictReader(io.StringIO(as_csv.output))}
    (chest,) = set(counts) - {"CT", "MR", "US"}  # the chest radiograph is CR or DX, by seed
    assert chest in {"CR", "DX"} and counts == {"CT": 8, chest: 1, "MR": 24, "US": 1}
    as_json = runner.invoke(main, ["sql", "select count(*) as n from quarantine", "--format", "json"])
    assert as_json.exit_code == 0 and json.loads(as_json.output.splitlines()[0]) == {"n": 0}
    table = runner.invoke(main, ["sql", query, "--restricted"])
    assert "modality" in table.output and "CT" in table.output
    bad = runner.invoke(main, ["sql", "selec nonsense"])
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: Parser Error") and bad.stderr.count("\n") == 1
    audit = read_table(Settings(data_dir=str(tmp_path / "data")).table_uri("audit_log")).to_pylist()
    reads = [r for r in audit if r["event"] == "restricted_read"]
    assert [r["command"] for r in reads] == ["sql", "sql"]  # the two --restricted queries, recorded before they ran
    sql = [r for r in audit if r["event"] == "cli" and r["command"] == "sql"]
    assert len(sql) == 5 and [r["outcome"] for r in sql].count("error") == 2  # every command, with how it ended
    assert sum(r["restricted"] for r in sql) == 2


def test_demo_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "data" / "dagster_home"))  # restored after the test
    result = CliRunner().invoke(main, ["demo", "--patients", "2", "--fresh"])
    assert result.exit_code == 0, result.output
    for reason in ("empty_file", "not_dicom", "truncated", "no_pixel_data", "missing_uid", "undecodable_pixels",
                   "sop_uid_conflict", "duplicate_instance"):
        assert reason in result.output
    phi = manifest_strings(tmp_path / "data" / "restricted" / "synthetic_truth")
    lake = Settings(data_dir=str(tmp_path / "data")).lake
    lake_text = json.dumps([read_table(uri).to_pylist() for uri in discover_tables(lake).values()], default=str)
    assert "sop_uid_conflict" in lake_text
    assert phi and not [s for s in phi if s in lake_text]
    assert "Retrieval" in result.output and "P@5" in result.output
    assert "Segmentations" in result.output and "liver" in result.output  # the local backend ran on the CT
    assert (tmp_path / "data" / "dagster_home" / "dagster.yaml").is_file()
    assert (tmp_path / "data" / DEMO_MARKER).is_file()  # created by the demo: a later --fresh may delete it
    audit = read_table(Settings(data_dir=str(tmp_path / "data")).table_uri("audit_log")).to_pylist()
    assert sorted((r["event"], r["command"]) for r in audit if r["event"] != "run") == [
        ("cli", "demo"), ("restricted_read", "demo")]  # its one restricted query, and the command with its outcome
    assert list((tmp_path / "data" / "dagster_home").rglob("*.db"))  # runs persisted for the UI


def test_deid_command(tmp_path: Path, small_study: tuple[Path, Path], phi_strings: list[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCA_DATA_DIR", str(tmp_path / "data"))
    source = tmp_path / "in"
    shutil.copytree(small_study[0], source)
    (source / "junk.dcm").write_bytes(b"not dicom at all")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["deid", str(source), str(out), "--workers", "2", "--quarantine", str(tmp_path / "q")])
    assert result.exit_code == 1  # one input could not be de-identified
    assert "not_dicom 1" in result.output
    files = sorted(out.rglob("*.dcm"))
    assert len(files) == SMALL.instances_per_patient
    assert not list(out.rglob(".*"))  # no temporary files left behind
    assert all(p.relative_to(out).parts[0].startswith("2.25.") for p in files)  # names carry pseudonyms only
    lowered = [s.lower().encode() for s in phi_strings]
    assert not [p for p in files if any(s in p.read_bytes().lower() for s in lowered)]
    assert len(list((tmp_path / "q").rglob("*.dcm"))) == 1
    again = CliRunner().invoke(main, ["deid", str(source), str(tmp_path / "out2"), "--basic-only"])
    assert "(profile basic)" in again.output
    ds = pydicom.dcmread(min((tmp_path / "out2").rglob("*.dcm")))
    assert not ds.get("StudyDate")  # basic profile: dates emptied, not shifted


def test_deid_command_never_aborts_nor_overwrites(tmp_path: Path, small_study: tuple[Path, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCA_DATA_DIR", str(tmp_path / "data"))
    source = tmp_path / "in"
    source.mkdir()
    ct = sorted(small_study[0].rglob("ct/*.dcm"))[:2]
    shutil.copy(ct[0], source / "a.dcm")
    shutil.copy(ct[0], source / "a-again.dcm")  # the same instance twice: written once
    clash = pydicom.dcmread(ct[1])
    clash.SOPInstanceUID = pydicom.dcmread(ct[0]).SOPInstanceUID  # same SOP Instance UID, other content
    clash.save_as(source / "z-clash.dcm")
    no_study = pydicom.dcmread(ct[1])
    del no_study.StudyInstanceUID  # made pydicom-based tools crash when naming the output
    no_study.save_as(source / "no-study.dcm")
    secret = tmp_path / "outside.dcm"
    shutil.copy(ct[1], secret)
    (source / "link.dcm").symlink_to(secret)  # never followed out of the input folder
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["deid", str(source), str(out), "--workers", "1", "--ocr", "off"])
    assert result.exit_code == 1
    assert "1 file(s) written" in result.output and "from 5 input(s)" in result.output
    assert "1 identical duplicate(s) not written again" in result.output
    assert "missing_uid 1" in result.output and "sop_uid_conflict 1" in result.output and "symlink_refused 1" in result.output
    (written,) = list(out.rglob("*.dcm"))
    first = written.read_bytes()
    again = CliRunner().invoke(main, ["deid", str(source), str(out), "--workers", "2", "--ocr", "off"])
    assert "0 file(s) written" in again.output and "2 identical duplicate(s)" in again.output
    assert list(out.rglob("*.dcm")) == [written] and written.read_bytes() == first  # nothing overwritten


def test_deid_command_user_errors_are_one_line(tmp_path: Path, small_study: tuple[Path, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCA_DATA_DIR", str(tmp_path / "data"))
    source = tmp_path / "in"
    shutil.copytree(small_study[0] / next(p.name for p in small_study[0].iterdir()) / "cxr", source)
    headless = tmp_path / "patients.csv"
    headless.write_text("MRN0048213,NEWID1\n")  # no header: its first line is an identifier
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    for args in (["--patient-map", str(headless)], []):
        out = str(tmp_path / "out") if args else str(not_a_folder / "out")
        result = CliRunner().invoke(main, ["deid", str(source), out, "--workers", "1", "--ocr", "off", *args])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error:") and "MRN0048213" not in result.output


def test_deid_refuses_cut_files_and_overlapping_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file cut inside the Pixel Data header, or with a 0xFFFFFFF0 length, is refused (not written as a
    2 KB output without pixels); an output inside the input, the input inside the output, or a quarantine
    inside either is refused with one line and exit 2, before anything is written."""
    from hca_assets_tests import crafted

    monkeypatch.setenv("HCA_DATA_DIR", str(tmp_path / "data"))
    source = tmp_path / "in"
    source.mkdir()
    plain = crafted.instance(64, 64, crafted.ExplicitVRLittleEndian, bytes(64 * 64))
    (source / "cut.dcm").write_bytes(crafted.cut_in_pixel_header(plain))
    (source / "long.dcm").write_bytes(crafted.huge_pixel_length(plain))
    (source / "good.dcm").write_bytes(plain)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["deid", str(source), str(out), "--workers", "1", "--ocr", "off"])
    assert result.exit_code == 1 and "truncated 2" in result.output, result.output
    (written,) = out.rglob("*.dcm")
    assert pydicom.dcmread(written).pixel_array.shape == (64, 64)
    (out / "inner").mkdir()
    for args in ([source, source], [source, source / "out"], [out / "inner", out], [source, tmp_path / "o2", "--quarantine",
                                                                                    str(tmp_path / "o2" / "q")]):
        before = sorted(tmp_path.rglob("*"))
        result = CliRunner().invoke(main, ["deid", *map(str, args), "--workers", "1", "--ocr", "off"])
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1 and "overlap" in result.stderr
        assert sorted(tmp_path.rglob("*")) == before  # nothing written
