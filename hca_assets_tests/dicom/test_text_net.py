"""The learned text net behind the glyph screen: it reads what the screen misses (small, grey, bold type on real
images), samples series and cines and widens to every frame once it finds text there; and the recall suite's
fast subset (generated type on real public backgrounds, ``hca_assets_tests/recall.py``) is blacked out."""

from __future__ import annotations

import itertools
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from hca_assets.dicom.burned_in import (
    NET_MAX_SIDE,
    BurnedInStatus,
    RapidOcrReader,
    TextScreen,
    clean_burned_in_text,
    display_frames,
    net_sample,
    screen_changes,
    viewer_pixels,
)
from hca_assets.dicom.profile import DeidProfile
from hca_assets.stages.deid import DeidRecord, DeidSpec, deidentify_files, series_plan
from hca_assets_tests import recall

READER, NET = RapidOcrReader(), RapidOcrReader(max_side=NET_MAX_SIDE, threads=1)
SMALL_TYPE = recall.Case("ct_16bit", "sans", 0, 10, "white", "top_left", True)  # a PACS corner block the screen misses


def test_sample_is_first_middle_last_every_nth_and_screen_changes() -> None:
    assert net_sample([False] * 25, 10) == {0, 10, 12, 20, 24}
    assert screen_changes([False, False, True, True, False]) == {1, 2, 3, 4}
    assert net_sample([False, False, True, True, False, False, False], 100) == {0, 1, 2, 3, 4, 6}
    assert net_sample([], 10) == set()


def test_net_reads_a_small_corner_block_the_screen_misses_on_a_real_ct() -> None:
    rendered = recall.render(SMALL_TYPE)
    grey = display_frames(*viewer_pixels(rendered.dataset))[0]
    assert TextScreen().bands(grey) == []  # the classical screen alone sees nothing here
    alone = clean_burned_in_text(recall.render(SMALL_TYPE).dataset, TextScreen(), READER)
    assert alone.status == BurnedInStatus.NO_TEXT_FOUND  # ... so without the net all five lines would pass
    result = clean_burned_in_text(rendered.dataset, TextScreen(), READER, net=NET)
    assert result.status == BurnedInStatus.REDACTED and result.net_hits == 1 and result.net_frames == (0,)
    assert all(recall.caught(rendered, result)) and len(rendered.counted()) == 5
    assert result.blanked_fraction < 0.1  # the block, not the slice


def _series(folder: Path, case: recall.Case | None, slices: int) -> list[Path]:
    """A series of ``slices`` real CT slices (one public slice, each with its own UIDs), with the case's text."""
    folder.mkdir()
    series_uid, paths = generate_uid(), []
    for n in range(slices):
        ds = recall.render(case).dataset if case else recall.background("ct_16bit")
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = series_uid, generate_uid(), n + 1
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        paths.append(folder / f"{n:03d}.dcm")
        ds.save_as(paths[-1])
    return paths


SPEC = DeidSpec(profile=DeidProfile(), key=b"text-net-test-key-0123456789")


def test_a_series_without_text_is_read_by_the_net_only_on_its_sample(tmp_path: Path) -> None:
    sources = _series(tmp_path / "in", None, 24)
    ((members, picked),) = series_plan(sources, SPEC.net_every)
    assert len(members) == 24 and len(picked) == len(net_sample([False] * 24, SPEC.net_every))
    records = list(deidentify_files(sources, tmp_path / "out", SPEC, workers=2))
    assert all(isinstance(r, DeidRecord) and r.burned_in == BurnedInStatus.NO_TEXT_FOUND for r in records)
    assert sum(bool(r.net_frames) for r in records if isinstance(r, DeidRecord)) == len(picked)


def test_a_series_whose_type_the_screen_misses_is_read_whole_and_redacted_on_every_slice(tmp_path: Path) -> None:
    sources = _series(tmp_path / "in", SMALL_TYPE, 24)
    records = list(deidentify_files(sources, tmp_path / "out", SPEC, workers=2))
    assert all(isinstance(r, DeidRecord) for r in records)
    assert [r.burned_in for r in records] == [BurnedInStatus.REDACTED] * 24  # the sample found it, the rest followed
    assert all(r.net_frames == (0,) and r.frames_flagged == 0 for r in records if isinstance(r, DeidRecord))
    outputs = sorted((tmp_path / "out").rglob("*.dcm"))
    assert len(outputs) == 24 and not list((tmp_path / "out").rglob(".*"))  # each replaced whole, no temporaries
    rendered = recall.render(SMALL_TYPE)
    for path in outputs[::5]:
        out = pydicom.dcmread(path)
        result = clean_burned_in_text(out, TextScreen(), READER, net=NET)
        assert result.status == BurnedInStatus.NO_TEXT_FOUND  # nothing readable is left
        blacked = display_frames(*viewer_pixels(out))[0] == 0
        assert all(blacked[ink].mean() > 0.9 for _, ink, _ in rendered.counted())


# the fast subset: a fixed stride through the whole suite (the benchmark runs all of it), every background.
# Known misses of the goal (every line caught), each still failing (strict): 8–10 px type on a 3072-px radiograph,
# where the net's detector does not see it at the image's own size (benchmarks/RESULTS.md lists all misses).
KNOWN_MISSES = {"dx_dog-mono1-10px-grey-top_edge-block", "dx_dog-serif1-8px-white-bottom_left-line"}
FAST = [pytest.param(c, id=c.name, marks=[pytest.mark.xfail(strict=True, reason="known miss: small type on a "
                                                                                   "3072-px radiograph")]
                     if c.name in KNOWN_MISSES else [])
        for c in itertools.islice(recall.cases(), 0, None, 23)]


@pytest.mark.parametrize("case", FAST)
def test_generated_type_on_real_backgrounds_is_blacked_out(case: recall.Case) -> None:
    rendered = recall.render(case)
    result = clean_burned_in_text(rendered.dataset, TextScreen(), READER, net=NET)  # as hca deid: a sample of a cine
    assert rendered.counted() == [] or all(recall.caught(rendered, result)), result.status
