"""Per-file resource limits: the timeout of ordered_map (every stage's worker pool), memory of a
decompression bomb, rendering past the timeout, and the settings that carry the limits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hca_assets._infra.parallel import ItemFailed, ordered_map
from hca_assets.config import Limits, Settings
from hca_assets.dicom.enum import QuarantineReason
from hca_assets_tests.crafted import rle_bomb

HANG_SECONDS = 60.0


def _slow(item: tuple[str, str]) -> str:
    """Test-only work: ``hang`` records its pid and sleeps far past any timeout, ``die`` kills its own
    process, anything else comes back upper-cased."""
    what, pid_dir = item
    if what == "hang":
        (Path(pid_dir) / f"{os.getpid()}.pid").touch()
        time.sleep(HANG_SECONDS)
    if what == "die":
        os._exit(9)
    if what == "raise":
        raise KeyError(what)
    return what.upper()


def _gone(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` no longer exists (a killed worker is reaped by the fork server)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("workers", [1, 2])
def test_an_item_past_the_timeout_is_killed_and_the_rest_go_on(workers: int, tmp_path: Path) -> None:
    names = ["a", "hang", "b", "c", "die", "d", "e", "hang", "f"]
    out = list(ordered_map(_slow, [(n, str(tmp_path)) for n in names], workers=workers, timeout=1.5))

    assert [r for r in out if not isinstance(r, ItemFailed)] == ["A", "B", "C", "D", "E", "F"]
    failed = {r.index: r for r in out if isinstance(r, ItemFailed)}
    assert sorted(failed) == [1, 4, 7] and all(out[i] is failed[i] for i in failed)  # in the items' own places
    assert failed[1].timed_out and failed[7].timed_out and 1.5 <= failed[1].seconds < 10
    assert not failed[4].timed_out and failed[4].exitcode == 9
    assert "timeout" in failed[1].message and "died" in failed[4].message
    pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2 and all(_gone(pid) for pid in pids)


def test_timeout_works_off_the_main_thread(tmp_path: Path) -> None:
    """Dagster and the CLI may call a stage from any thread: the timeout must not rely on SIGALRM."""
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.extend(
        ordered_map(_slow, [("x", str(tmp_path)), ("hang", str(tmp_path)), ("y", str(tmp_path))], timeout=1.0)))
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert results[0] == "X" and results[2] == "Y"
    assert isinstance(results[1], ItemFailed) and results[1].timed_out


def test_an_exception_is_raised_in_its_turn_and_workers_are_stopped(tmp_path: Path) -> None:
    seen: list[str] = []
    items = [("a", str(tmp_path)), ("raise", str(tmp_path)), ("hang", str(tmp_path))]
    with pytest.raises(KeyError):
        for r in ordered_map(_slow, items, workers=2, timeout=30):
            seen.append(str(r))
    assert seen == ["A"]
    pids = [int(p.stem) for p in tmp_path.glob("*.pid")]  # the hang had started: its worker is killed on exit
    assert all(_gone(pid) for pid in pids)


def test_progress_counts_every_item_including_lost_ones(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    items = [("a", str(tmp_path)), ("die", str(tmp_path)), ("b", str(tmp_path))]
    list(ordered_map(_slow, items, timeout=10, progress=lambda done, total: calls.append((done, total))))
    assert calls == [(1, 3), (2, 3), (3, 3)]


_MEASURE = """
import sys
from pathlib import Path
from hca_assets.config import Limits
from hca_assets.dicom.io import InvalidInstance, inspect_file
try:
    print(inspect_file(Path(sys.argv[1]), b"k" * 16, Limits(max_pixels=int(sys.argv[2]))).pixel_bytes)
except InvalidInstance as exc:
    print(exc.reason)
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(peak_kib // 1024)  # this process's own peak; ru_maxrss would include the parent's RSS at fork
"""


def _inspect_in_subprocess(path: Path, max_pixels: int) -> tuple[str, int]:
    """(outcome, peak RSS in MiB) of inspecting ``path`` in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path), str(max_pixels)], capture_output=True,
                          text=True, timeout=60, check=True)
    outcome, peak = done.stdout.split()
    return outcome, int(peak)


def test_decompression_bomb_keeps_memory_low(tmp_path: Path) -> None:
    """The issue's bomb: 4 MB of RLE claiming 16384² (268 MB decoded). Refused by default with the memory
    of a plain import; with the limit raised the same file really is decoded, and memory shows it."""
    bomb = tmp_path / "bomb.dcm"
    bomb.write_bytes(rle_bomb(16384, 16384))
    assert bomb.stat().st_size < 5 * 2**20

    outcome, refused_mib = _inspect_in_subprocess(bomb, Limits().max_pixels)
    assert outcome == QuarantineReason.TOO_MANY_PIXELS
    outcome, decoded_mib = _inspect_in_subprocess(bomb, 1 << 28)
    assert outcome == str(16384 * 16384)
    assert decoded_mib - refused_mib > 200, (refused_mib, decoded_mib)
    assert refused_mib < 300


def test_rendering_past_the_timeout_is_quarantined_as_timeout(tmp_path: Path) -> None:
    from hca_assets.stages.images import render_batch, render_quarantine

    (tmp_path / "deid" / "b1").mkdir(parents=True)
    (tmp_path / "deid" / "b1" / "big.dcm").write_bytes(rle_bomb(8192, 8192))  # ~4 s to render one frame
    (tmp_path / "deid" / "b1" / "small.dcm").write_bytes(rle_bomb(64, 64))
    rows = [{"sop_instance_uid": f"2.25.{i}", "series_instance_uid": "2.25.9", "study_instance_uid": "2.25.8",
             "patient_pseudonym": "PSN1", "modality": "OT", "path": f"b1/{name}.dcm", "sha256": f"{i}" * 64}
            for i, name in ((1, "big"), (2, "small"))]
    out = render_batch("b1", rows, tmp_path / "deid", tmp_path / "images", timeout=0.5)
    assert out.images.column("sop_instance_uid").to_pylist() == ["2.25.2"]
    assert out.lost == {"2.25.1": QuarantineReason.TIMEOUT}
    q = render_quarantine("b1", out.failed, rows, out.lost).to_pylist()
    assert [(r["reason"], r["stage"], r["kept_as"]) for r in q] == [("timeout", "images", "deid/b1/big.dcm")]
    assert "timeout" in q[0]["message"]


def test_limits_come_from_the_environment_and_reach_the_resource(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    from hca_assets.orchestration.resources import SettingsResource

    monkeypatch.setenv("HCA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HCA_MAX_PIXELS", "1000")
    monkeypatch.setenv("HCA_MAX_FILE_BYTES", "2000")
    monkeypatch.setenv("HCA_FILE_TIMEOUT_SECONDS", "7.5")
    settings = Settings.from_env()
    assert settings.limits == Limits(max_pixels=1000, max_file_bytes=2000, file_timeout_seconds=7.5)
    assert SettingsResource.from_settings(settings).settings().limits == settings.limits
    assert Settings(data_dir=str(tmp_path)).limits == Limits()


@pytest.mark.parametrize(("field", "value"), [("max_pixels", 0), ("max_file_bytes", 0), ("file_timeout_seconds", -1)])
def test_limits_are_validated(field: str, value: float, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=field):
        Settings(data_dir=str(tmp_path), **{field: value})  # type: ignore[arg-type]


def test_a_zero_timeout_turns_it_off() -> None:
    assert Limits().timeout == 300 and Limits(file_timeout_seconds=0).timeout is None
