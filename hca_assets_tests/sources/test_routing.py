"""Priority routing: levels from the landing folder, RequestedProcedurePriority and the AE title; the landing
sensor's and ``hca ingest``'s runs carry them, and the queued run coordinator starts a STAT batch before
Research runs queued earlier. Without rules, nothing changes."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pydicom
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.run_coordinator import SubmitRunContext
from dagster._core.storage.tags import PARTITION_NAME_TAG, PRIORITY_TAG
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from hca_assets.config import Settings
from hca_assets.in_process import ingest_pending
from hca_assets.orchestration.resources import SettingsResource
from hca_assets.sensors.landing import LEVEL_TAG, landing_sensor
from hca_assets.sources.claims import Batch
from hca_assets.sources.routing import batch_priority, parse_rules

FOLDERS = "STAT:folder=stat,Research:folder=backfill"
QUEUED = {
    "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator",
                        "config": {"max_concurrent_runs": 10, "dequeue_use_threads": False}},
    "run_launcher": {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"},  # records launches
}
ORIGIN = RemoteJobOrigin(RemoteRepositoryOrigin(InProcessCodeLocationOrigin(
    LoadableTargetOrigin(module_name="hca_assets.definitions"), location_name="hca_assets"), "__repository__"),
    "ingest_job")  # queued runs must name their code location


def with_rules(settings: Settings, rules: str) -> Settings:
    return Settings(data_dir=settings.data_dir, settle_seconds=0.0, workers=1, priority_rules=rules)


def batch(tmp: Path, files: dict[str, str | None]) -> Batch:
    """A batch whose files are DICOM headers with the given RequestedProcedurePriority (None: tag absent), or
    text (value ``"text"``: not DICOM)."""
    for name, priority in files.items():
        path = tmp / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if priority == "text":
            path.write_text("not dicom")
            continue
        ds = pydicom.Dataset()
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        if priority is not None:
            ds.RequestedProcedurePriority = priority
        ds.save_as(path, implicit_vr=True, little_endian=True)
    return Batch(key="b1", path=tmp, files=tuple(files), unreadable=())


def test_rules_parse_and_malformed_rules_are_refused(settings: Settings) -> None:
    rules = parse_rules(" STAT:priority=stat , Urgent:ae=ER_CT,Research:folder=backfill,")
    assert [(r.level, r.source, r.value) for r in rules] == [
        ("STAT", "priority", "STAT"), ("Urgent", "ae", "ER_CT"), ("Research", "folder", "backfill")]
    for bad in ("Critical:folder=x", "STAT:modality=CT", "STAT:folder=", "STAT:priority=URGENT", "STAT"):
        with pytest.raises(ValueError, match="priority rule"):
            with_rules(settings, bad)


def test_folder_rules_highest_file_wins(settings: Settings, tmp_path: Path) -> None:
    s = with_rules(settings, FOLDERS)
    def level(*files: str) -> tuple[str, int]:
        return batch_priority(Batch("b", tmp_path, files, ()), s)
    assert level("backfill/a.dcm", "backfill/sub/b.dcm") == ("Research", 0)
    assert level("backfill/a.dcm", "other/b.dcm") == ("Routine", 10)  # a file matching no rule is Routine
    assert level("backfill/a.dcm", "stat/b.dcm", "other/c.dcm") == ("STAT", 30)
    assert level("stat.dcm", "x/stat/a.dcm") == ("Routine", 10)  # only the first sub-folder counts
    assert level() == ("Routine", 10)


def test_header_rules_read_requested_procedure_priority(settings: Settings, tmp_path: Path) -> None:
    s = with_rules(settings, "STAT:priority=STAT,Urgent:priority=HIGH,Research:priority=LOW")
    assert batch_priority(batch(tmp_path / "1", {"a.dcm": "LOW", "b.dcm": "low "}), s) == ("Research", 0)
    assert batch_priority(batch(tmp_path / "2", {"a.dcm": "LOW", "b.dcm": "HIGH"}), s) == ("Urgent", 20)
    assert batch_priority(batch(tmp_path / "3", {"a.dcm": "LOW", "d/b.dcm": "STAT", "c.dcm": "HIGH"}), s) == ("STAT", 30)
    assert batch_priority(batch(tmp_path / "4", {"a.dcm": "LOW", "b.dcm": None}), s) == ("Routine", 10)
    assert batch_priority(batch(tmp_path / "5", {"a.dcm": "LOW", "b.txt": "text"}), s) == ("Routine", 10)
    assert batch_priority(batch(tmp_path / "6", {"a.dcm": "ROUTINE"}), s) == ("Routine", 10)


def test_ae_rule_needs_a_calling_ae_title(settings: Settings, tmp_path: Path) -> None:
    s = with_rules(settings, "Urgent:ae=ER_CT")
    b = Batch("b", tmp_path, ("a.dcm",), ())
    assert batch_priority(b, s) == ("Routine", 10)  # folder batches have no sender
    assert batch_priority(b, s, calling_ae="ER_CT ") == ("Urgent", 20)
    assert batch_priority(b, s, calling_ae="OTHER") == ("Routine", 10)


def land(settings: Settings, folder: str, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    """Drop one file under ``landing/<folder>/`` and tick the landing sensor once: its run requests."""
    path = Path(settings.landing) / folder / "x.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("payload")
    ctx = dg.build_sensor_context(instance=instance, resources={"storage": SettingsResource.from_settings(settings)})
    result = landing_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions("ingest_batches", list(request.partition_keys))
    return list(result.run_requests or [])


@pytest.mark.parametrize("rules", [FOLDERS, ""])
def test_queued_coordinator_dequeues_stat_before_queued_research(settings: Settings, rules: str) -> None:
    """Research runs are queued, then a STAT run: the coordinator daemon launches the STAT run first. Without
    rules the runs carry no priority and are launched in the order they were queued."""
    s = with_rules(settings, rules)
    with dg.instance_for_test(overrides=QUEUED) as instance:
        queued = []
        for folder in ("backfill", "backfill", "stat"):
            (request,) = land(s, folder, instance)
            assert request.tags == ({PRIORITY_TAG: "30" if folder == "stat" else "0",
                                     LEVEL_TAG: "STAT" if folder == "stat" else "Research"} if rules else {})
            run = instance.add_run(dg.DagsterRun(job_name="ingest_job", remote_job_origin=ORIGIN,
                                                 tags={PARTITION_NAME_TAG: request.partition_key, **request.tags}))
            instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))  # type: ignore[arg-type]
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.QUEUED  # type: ignore[union-attr]
            queued.append(run.run_id)
        with create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as workspace:
            list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(workspace))
        launched = [r.run_id for r in instance.run_launcher.queue()]  # type: ignore[attr-defined]
        assert launched == ([queued[2], queued[0], queued[1]] if rules else queued)


def test_ingest_runs_pending_batches_highest_priority_first(settings: Settings) -> None:
    s = Settings(data_dir=settings.data_dir, settle_seconds=0.0, workers=1, handoff_seconds=0.0, priority_rules=FOLDERS)
    with dg.instance_for_test() as instance:
        for folder in ("backfill", "stat"):  # two committed batches, the Research one older
            land(s, folder, instance)
        runs = [r for r in ingest_pending(s, instance) if r.batch.startswith("b")]
        levels = [instance.get_run_by_id(r.run_id).tags.get(LEVEL_TAG) for r in runs]  # type: ignore[union-attr]
        assert levels == ["STAT", "Research"]
        assert runs[0].batch > runs[1].batch  # the newer batch ran first
