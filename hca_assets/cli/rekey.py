"""``hca rekey``: re-pin the lake to a new pseudonymisation key."""

from __future__ import annotations

import click

from hca_assets.cli._common import UserError, _settings, main


@main.command("rekey")
def rekey_cmd() -> None:
    """Make the configured key (HCA_DEID_KEY, else restricted/hca.key) the key of this data folder's lake.

    Patients, studies, series and instances already de-identified keep their pseudonyms and date offsets
    (taken from the restricted crosswalk); only new ones get pseudonyms from the new key.
    """
    from hca_assets._infra.keys import KeyRefused
    from hca_assets.lake.keypin import rotate_key

    try:
        old, new = rotate_key(_settings())
    except KeyRefused as exc:
        raise UserError(str(exc)) from exc
    if old is None:
        click.echo(f"the lake had no key yet: pinned key {new}")
    elif old == new:
        click.echo(f"key {new} is already the lake's key: nothing to rotate")
    else:
        click.echo(f"key {old} retired; the lake now uses key {new} (pseudonyms already given are kept)")
