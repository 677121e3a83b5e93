"""The landing folder as a :class:`~hca_assets.sources.base.DicomSource`: files dropped (or released by a network
source) into the landing zone become ingest batches through the claim protocol of :mod:`hca_assets.sources.claims`."""

from __future__ import annotations

from pathlib import Path

from hca_assets._infra.locks import FileLock
from hca_assets.config import Settings
from hca_assets.sources.claims import Batch, claim

__all__ = ["LandingFolder"]


class LandingFolder:
    """The landing zone of ``settings``; ``claim`` moves its settled files into one new committed batch."""

    name = "landing"

    def __init__(self, settings: Settings) -> None:
        self.landing, self.raw = Path(settings.landing), Path(settings.raw_batches)
        self.settle_seconds = settings.settle_seconds

    def claim(self, *, lock: FileLock | None = None) -> Batch | None:
        """Claim what is ready into a new batch (None: nothing ready); ``lock``: the claim lock, if held already."""
        return claim(self.landing, self.raw, settle_seconds=self.settle_seconds, lock=lock)

    def poll(self) -> int:
        """Claim what is ready; releases no study (the files are already in the landing zone), so returns 0."""
        self.claim()
        return 0
