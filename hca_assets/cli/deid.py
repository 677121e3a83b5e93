"""``hca deid``: de-identify a folder of DICOM files into another, without a data folder."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import click

from hca_assets.cli._common import UserError, _apart, _lake_key, _settings, _write_report, audit_note, main
from hca_assets.config import Settings
from hca_assets.dicom.enum import DeidOption


@main.command("deid")
@click.argument("input_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--option", "options", multiple=True, type=click.Choice([o.value for o in DeidOption]),
              help="PS3.15 option (repeatable) [default: rtn_long_modif_dates + rtn_pat_chars].")
@click.option("--basic-only", is_flag=True, help="The Basic Profile with no options.")
@click.option("--uid-map", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CSV id_old,id_new for UIDs.")
@click.option("--patient-map", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV id_old,id_new for patient IDs.")
@click.option("--ocr", type=click.Choice(["all", "candidates", "off"]), default="all", show_default=True,
              help="Which images are screened for burned-in text: all, only modalities that commonly carry it, none.")
@click.option("--net/--no-net", default=True, show_default=True,
              help="A learned text detector reads every single-frame image and a sample of each series, whatever the screen says.")
@click.option("--workers", type=int, default=None, help="Worker processes [default: HCA_WORKERS or 2].")
@click.option("--quarantine", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Copy inputs that fail de-identification here (named by sha256), with cli/rejected-<time>.csv "
                   "(sha256, reason, message).")
def deid_cmd(input_dir: Path, output_dir: Path, options: tuple[str, ...], basic_only: bool, uid_map: Path | None,
             patient_map: Path | None, ocr: str, net: bool, workers: int | None, quarantine: Path | None) -> None:
    """De-identify every DICOM file under INPUT_DIR into OUTPUT_DIR/<study>/<series>/<instance>.dcm.

    Same engine as the deid_dicom asset; each output is verified before it is renamed into place.
    """
    from hca_assets._infra.parallel import warm_up

    _apart({"INPUT_DIR": input_dir, "OUTPUT_DIR": output_dir, **({"--quarantine": quarantine} if quarantine else {})})
    chosen = () if basic_only else (options or Settings.deid_options)
    settings = _settings(deid_options=tuple(chosen), ocr_mode=ocr, deid_net=net, uid_map=str(uid_map) if uid_map else None,
                         patient_map=str(patient_map) if patient_map else None,
                         **({"workers": workers} if workers else {}))
    if settings.workers > 1 or settings.limits.timeout:  # files run in worker processes: start their server
        warm_up(("hca_assets.stages.deid",))  # now, so it imports the engine while the key and spec load here

    from hca_assets.dicom.enum import QuarantineReason
    from hca_assets.stages.deid import DeidRecord, deidentify_files, spec_from_settings
    from hca_assets.stages.ingest import keep_file

    key = _lake_key(settings)
    try:
        spec = spec_from_settings(settings, key)
        output_dir.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as exc:  # a malformed mapping file, an output path that cannot be a folder
        raise UserError(str(exc).splitlines()[0]) from exc
    found = [p for p in input_dir.rglob("*") if not p.name.startswith(".") and (p.is_symlink() or p.is_file())]
    sources = sorted(p for p in found if not p.is_symlink())
    rejected: Counter[str] = Counter({"symlink_refused": len(found) - len(sources)} if len(found) > len(sources) else {})
    written = duplicates = 0
    from tqdm import tqdm

    report: list[tuple[str, str, str]] = []  # (sha256, reason, PHI-free message) of each input not written
    with tqdm(total=len(sources), unit="file", desc="deid") as bar:
        for i, result in enumerate(deidentify_files(sources, output_dir, spec, workers=settings.workers,
                                                    progress=lambda done, total: bar.update(done - bar.n),
                                                    timeout=settings.limits.timeout)):
            if isinstance(result, DeidRecord):
                written += 1
            elif result.reason == QuarantineReason.DUPLICATE_INSTANCE:
                duplicates += 1  # an identical instance is already in the output: nothing lost, nothing written
            else:
                rejected[str(result.reason)] += 1
                report.append((result.sha256 or "", str(result.reason), result.message))
                if quarantine:
                    keep_file(Path(result.source), quarantine, "cli", result.sha256, i,
                              max_copy_bytes=settings.limits.max_file_bytes)
    if quarantine and report:
        _write_report(quarantine / "cli", report)
    audit_note(inputs=len(found), written=written, duplicates=duplicates, rejected=sum(rejected.values()))
    click.echo(f"{written} file(s) written into {output_dir} from {len(found)} input(s) (profile {spec.profile.name})"
               + (f"; {duplicates} identical duplicate(s) not written again" if duplicates else ""))
    if rejected:
        click.echo("not de-identified (nothing written for them): "
                   + ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items())), err=True)
        sys.exit(1)
