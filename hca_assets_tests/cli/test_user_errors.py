"""Every `hca` user error is one line on stderr with exit code 2; `hca demo --fresh` deletes only a folder the
demo created; `hca search` exits cleanly (no C++ abort at interpreter exit)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from hca_assets.cli import DEMO_MARKER, _demo_data_dir, main
from hca_assets.config import Settings
from hca_assets_tests.builders import assert_one_line_user_error, small_index

HCA = str(Path(sys.executable).parent / "hca")


@pytest.mark.parametrize("args", [
    ["sql"],  # missing QUERY
    ["nosuch"],
    ["--bogus"],
    ["sql", "SELECT 1", "--format", "xml"],
    ["sql", "SELECT 1; SELECT 2"],
    ["sql", "SELECT * FROM read_text('/etc/passwd')"],
    ["sql", "COPY (SELECT 1) TO 'out.csv'"],
    ["sql", "SELEC nonsense"],
    ["sql", "SELECT * FROM raw_instances"],  # restricted without --restricted
    ["sql", "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1"],  # EXPLAIN ANALYZE runs what it explains
    ["sql", "explain (format json) insert into t values (1)"],
    ["search"],  # neither FILE nor --text
    ["search", "--text", "liver", "-k", "many"],
    ["search", "no-such-file.png"],
    ["search", "--text", "liver"],  # the local backend embeds no text
    ["demo", "--patients", "two"],
])
def test_usage_and_refusals_are_one_line_exit_2(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert_one_line_user_error(CliRunner().invoke(main, args))
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(("env", "query", "said"), [
    ({"HCA_SQL_TIMEOUT_SECONDS": "2"}, "SELECT count(*) FROM range(1000000) a, range(1000000) b WHERE a.range + b.range = 7",
     "stopped after 2 s"),
    ({}, "SELECT len(list(range(600000000)))", "Out of Memory"),  # built outside DuckDB's buffer manager
    ({"HCA_SQL_MEMORY_MB": "1024"}, "SELECT count(*) FROM (SELECT * FROM range(100000000) ORDER BY random())",
     "Out of Memory"),
    ({"HCA_SQL_MAX_ROWS": "10"}, "SELECT * FROM range(11)", "more than 10 rows"),
])
def test_sql_is_bounded_in_time_memory_and_rows(env: dict[str, str], query: str, said: str, tmp_path: Path) -> None:
    """The issue's unbounded statements end with one line and exit 2 — as a real process, as a user runs it
    (a cross join of two 10⁶ ranges ran until killed; list(range(6e8)) passed 4 GB) — and write nothing."""
    done = subprocess.run([HCA, "sql", query], check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "HCA_DATA_DIR": str(tmp_path / "data"), **env})
    assert_one_line_user_error(done)
    assert said in done.stderr
    assert list(tmp_path.iterdir()) == []  # no .tmp spill folder in the working directory


def test_invalid_settings_and_unreadable_query_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCA_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "notes.txt").write_text("not an image")
    assert_one_line_user_error(CliRunner().invoke(main, ["search", str(tmp_path / "notes.txt")]))
    monkeypatch.setenv("HCA_WORKERS", "many")
    assert_one_line_user_error(CliRunner().invoke(main, ["sql", "SELECT 1"]))


def test_fresh_refuses_a_folder_the_demo_did_not_create(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "real-data"
    (data / "restricted").mkdir(parents=True)
    (data / "restricted" / "crosswalk.parquet").write_bytes(b"the only copy")
    monkeypatch.setenv("HCA_DATA_DIR", str(data))
    result = CliRunner().invoke(main, ["demo", "--fresh", "--patients", "1"])
    assert_one_line_user_error(result)
    assert "not created by `hca demo`" in result.stderr
    assert (data / "restricted" / "crosswalk.parquet").read_bytes() == b"the only copy"
    assert sorted(p.name for p in data.iterdir()) == ["restricted"]  # nothing added either

    (data / DEMO_MARKER).symlink_to(tmp_path / "elsewhere")  # a marker must be the demo's own file
    (tmp_path / "elsewhere").write_text("x")
    assert_one_line_user_error(CliRunner().invoke(main, ["demo", "--fresh", "--patients", "1"]))
    demo_made = tmp_path / "demo-made"
    _demo_data_dir(demo_made, fresh=False)
    (tmp_path / "link").symlink_to(demo_made)  # a link to a demo folder: refused, not followed
    monkeypatch.setenv("HCA_DATA_DIR", str(tmp_path / "link"))
    assert_one_line_user_error(CliRunner().invoke(main, ["demo", "--fresh", "--patients", "1"]))
    assert (data / "restricted" / "crosswalk.parquet").is_file() and (demo_made / DEMO_MARKER).is_file()


def test_fresh_deletes_a_folder_the_demo_created(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _demo_data_dir(data, fresh=True)  # absent: created, with the marker
    assert sorted(p.name for p in data.iterdir()) == [DEMO_MARKER]
    locked = data / "landing" / "locked_dir"  # the demo's unreadable folder
    locked.mkdir(parents=True)
    (locked / "x.dcm").write_bytes(b"x")
    locked.chmod(0)
    _demo_data_dir(data, fresh=False)
    assert (locked.parent / "locked_dir").exists()  # without --fresh nothing is deleted
    _demo_data_dir(data, fresh=True)
    assert sorted(p.name for p in data.iterdir()) == [DEMO_MARKER]  # emptied, and marked again


def test_search_exits_cleanly_with_nothing_on_stderr(tmp_path: Path) -> None:
    """Runs the real command (reads the images and labels Delta tables, searches FAISS) in fresh processes."""
    settings = Settings(data_dir=str(tmp_path / "data"))
    images = small_index(settings)
    Image.fromarray(images[3]).save(tmp_path / "query.png")
    env = {**os.environ, "HCA_DATA_DIR": settings.data_dir}
    for _ in range(3):
        proc = subprocess.run([HCA, "search", str(tmp_path / "query.png"), "-k", "3"], capture_output=True, text=True,
                              env=env, timeout=120, check=False)
        assert (proc.returncode, proc.stderr) == (0, "")
        lines = proc.stdout.splitlines()
        assert len(lines) == 3 and "2.25.101" in lines[0] and "ct_chest" in lines[0]  # itself first, labelled
    refused = subprocess.run([HCA, "sql", "SELECT 1; SELECT 2"], capture_output=True, text=True, env=env, timeout=120,
                             check=False)
    assert_one_line_user_error(refused)
