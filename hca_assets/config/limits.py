"""Per-file resource limits: checked before a file is decoded, so a hostile input costs only itself."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "Limits"]


@dataclass(frozen=True)
class Limits:
    """Per-file resource limits, checked before a file is decoded; an input over one is quarantined.

    - ``max_pixels`` (2^27 samples = rows × columns × frames × samples per pixel): rendering peaks at
      ~10 bytes per sample (measured), so two workers at the limit stay under ~3 GB on top of the
      interpreter, and a 16384² decompression bomb (2^28) is refused. It admits a 512³ volume, 4096² × 8
      frames, 1024² × 128 cine frames; digital breast tomosynthesis and whole-slide levels need more.
    - ``max_file_bytes`` (2^27 × 8 = 1 GiB): the largest uncompressed instance the pixel limit admits
      (64-bit float samples); nothing bigger can be a valid one.
    - ``file_timeout_seconds`` (300 s) per file and stage: the slowest instance within the pixel limit,
      an RGB 640×480 ultrasound cine of ~145 frames OCR'd twice at ~0.5 s per frame, takes ~150 s.
      0 turns the timeout off (files then run in the calling process, e.g. under a debugger).
    """

    max_pixels: int = 1 << 27
    max_file_bytes: int = (1 << 27) * 8
    file_timeout_seconds: float = 300.0

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_file_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be > 0, got {getattr(self, name)}")
        if self.file_timeout_seconds < 0:
            raise ValueError(f"`file_timeout_seconds` must be >= 0 (0: no timeout), got {self.file_timeout_seconds}")

    @property
    def timeout(self) -> float | None:
        """The per-file timeout for :func:`hca_assets._infra.parallel.ordered_map`; None when it is off (0), and then
        files are processed in the calling process."""
        return self.file_timeout_seconds or None


DEFAULT_LIMITS = Limits()
