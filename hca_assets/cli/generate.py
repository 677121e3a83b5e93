"""``hca generate``: synthetic DICOM studies with burned-in PHI, and their ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from hca_assets.cli._common import _settings, main

if TYPE_CHECKING:
    from hca_assets.synthetic import GeneratorOptions


@main.command("generate")
@click.option("--patients", type=int, default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the DICOM files.")
@click.option("--truth", type=click.Path(path_type=Path), default=None,
              help="Folder for ground truth and the PHI manifest [default: <data>/restricted/synthetic_truth].")
@click.option("--ct-slices", type=int, default=48, show_default=True)
@click.option("--ct-size", type=int, default=512, show_default=True)
def generate_cmd(patients: int, seed: int, out: Path, truth: Path | None, ct_slices: int, ct_size: int) -> None:
    """Write synthetic phantom studies with realistic PHI (plus ground truth, outside OUT)."""
    from hca_assets.synthetic import GeneratorOptions

    if truth is None:
        settings = _settings()
        settings.ensure_restricted()  # the truth names patients: owner-only like the rest of the zone
        truth = Path(settings.truth_file).parent

    summary = _generate(out, truth, GeneratorOptions(patients=patients, seed=seed, ct_slices=ct_slices, ct_size=ct_size))
    click.echo(f"{summary.instances} instances for {summary.patients} patients in {summary.seconds:.1f} s "
               f"({summary.instances_per_second:.0f}/s); truth in {summary.truth}")


def _generate(out: Path, truth: Path, options: GeneratorOptions):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    from hca_assets.synthetic import generate

    with tqdm(total=options.patients * options.instances_per_patient, unit="inst", desc="generate") as bar:
        return generate(out, truth, options, progress=lambda done, total: bar.update(done - bar.n))
