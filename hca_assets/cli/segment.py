"""``hca segment``: NIfTI masks and a DICOM SEG for one series or file, without a data folder."""

from __future__ import annotations

from pathlib import Path

import click

from hca_assets.cli._common import UserError, _settings, audit_note, main
from hca_assets.segmentation import BACKENDS


@main.command("segment")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--prompt", "prompts", multiple=True, help="Structure to segment (repeatable) [default: the strategy's "
              "prompts for the input's modality and body part].")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder for <structure>.nii.gz and seg.dcm: new, empty, or from an earlier `hca segment`.")
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="Segmentation backend [default: HCA_SEGMENTER, else local].")
def segment_cmd(input_path: Path, prompts: tuple[str, ...], out: Path, backend: str | None) -> None:
    """Segment INPUT (a DICOM series folder, one DICOM file or a NIfTI volume): a NIfTI mask per structure on
    the input's grid, a DICOM SEG for DICOM input, and each structure's volume (mL) or area (mm²)."""
    from hca_assets.segmentation.backends import BackendError, segmenter_for
    from hca_assets.segmentation.base import BackendFailure
    from hca_assets.segmentation.standalone import InputError, segment_input

    try:
        settings = _settings()
        result = segment_input(input_path, out, prompts, segmenter_for(backend or settings.segmenter, settings))
    except (InputError, BackendError, BackendFailure) as exc:  # a failing endpoint or model too: one line, no traceback
        raise UserError(str(exc)) from exc
    audit_note(structures=len(result.structures))
    for s in result.structures:
        m = s.measurement
        size = (f"{m.volume_ml:10.1f} mL" if m.volume_ml is not None else f"{m.area_mm2:10.1f} mm²"
                if m.area_mm2 is not None else "   (no pixel spacing)")
        click.echo(f"{s.structure:<20} {size}  {m.voxels:>9} voxels  {s.path}")
    if result.seg_path:
        click.echo(f"DICOM SEG: {result.seg_path}")
    if result.seg_skipped:
        click.echo(f"no DICOM SEG: {result.seg_skipped} (the NIfTI masks above are complete)")
