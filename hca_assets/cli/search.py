"""``hca search``: nearest images, series or studies to a file, a text, or a SQL filter."""

from __future__ import annotations

from pathlib import Path

import click

from hca_assets.cli._common import UserError, _settings, audit_note, main


@main.command("search")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False)
@click.option("-k", "k", type=int, default=5, show_default=True)
@click.option("--level", type=click.Choice(["image", "series", "study"]), default="image", show_default=True)
@click.option("--text", default=None, help="Search by text (backends that embed text only).")
@click.option("--where", default=None, help="SQL condition on the indexed rows (columns: UIDs, patient_pseudonym, modality, "
              "body_part, batch …; subqueries may read PHI-free tables): search only the rows it keeps.")
def search_cmd(file: Path | None, k: int, level: str, text: str | None, where: str | None) -> None:
    """Nearest neighbours of FILE (DICOM or PNG) in the FAISS index, with pseudonymous IDs and labels."""
    from hca_assets.lake.warehouse import QueryRefused
    from hca_assets.search.query import load_query_image, search_similar

    if (file is None) == (text is None):
        raise click.UsageError("give FILE or --text (not both)")
    try:
        image = load_query_image(file) if file else None
    except Exception as exc:  # any unreadable query file (pydicom, PIL and numpy raise many types) is the user's
        raise UserError(f"FILE is neither a readable DICOM image nor a PNG/JPEG ({type(exc).__name__})") from exc
    try:
        found = search_similar(_settings(), image=image, text=text, k=k, level=level, where=where)
    except QueryRefused as exc:
        raise UserError(f"--where refused: {exc}") from exc
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from exc
    audit_note(results=len(found))
    for rank, n in enumerate(found, 1):
        series = f"series {n.series_instance_uid}  " if n.series_instance_uid else ""
        click.echo(f"{rank:>2}  {n.similarity:.4f}  {n.modality:<3} {n.body_part or '-':<13} study {n.study_instance_uid}  "
                   f"{series}{n.labels or ''}")
