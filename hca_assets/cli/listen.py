"""``hca listen``: a C-STORE listener that lands complete studies."""

from __future__ import annotations

import sys

import click

from hca_assets.cli._common import UserError, _settings, audit_note, main


@main.command("listen")
@click.option("--port", type=click.IntRange(1, 65535), default=11112, show_default=True)
@click.option("--ae-title", default="HCA", show_default=True, help="The listener's own AE title.")
@click.option("--allow", "allow", multiple=True, help="A calling AE title to accept (repeatable; none: any).")
@click.option("--host", default="0.0.0.0", show_default=True, help="The address to listen on.")
def listen_cmd(port: int, ae_title: str, allow: tuple[str, ...], host: str) -> None:
    """Receive studies by DICOM C-STORE until SIGINT/SIGTERM: each is collected in restricted/incoming and moved
    into the landing zone once its associations ended and nothing arrived for HCA_CSTORE_STABLE_SECONDS."""
    import logging
    import signal
    import threading
    import time

    import pydicom.config

    from hca_assets._infra.keys import KeyRefused
    from hca_assets.lake.keypin import lake_key
    from hca_assets.sources.cstore import CStoreListener

    if not 0 < len(ae_title.strip()) <= 16 or any(not 0 < len(a.strip()) <= 16 for a in allow):
        raise UserError("an AE title has 1 to 16 characters")
    settings = _settings()
    try:
        key = lake_key(settings)
    except KeyRefused as exc:
        raise UserError(str(exc)) from exc
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("hca_assets.sources.cstore").addHandler(handler)
    logging.getLogger("hca_assets.sources.cstore").setLevel(logging.INFO)
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # its messages may quote UIDs, and so may pydicom's
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)  # validation warnings about a peer's values:
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE  # this process only keeps the bytes
    listener = CStoreListener(settings, key, ae_title=ae_title, port=port, host=host, allow=allow)
    try:
        listener.start()
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    def progress() -> str:
        s = listener.stats
        return (f"{s.associations} associations ({s.rejected} refused), {s.stored} instances stored, {s.failed} "
                f"refused, {s.released} studies released")

    shown, last_shown = progress(), 0.0
    while not stop.wait(min(1.0, max(0.1, settings.cstore_stable_seconds / 4))):
        listener.poll()
        if (line := progress()) != shown and time.monotonic() - last_shown >= 5:
            click.echo(line, err=True)
            shown, last_shown = line, time.monotonic()
    listener.stop()
    s, held = listener.stats, len(listener.incoming.studies())
    audit_note(associations=s.associations, stored=s.stored, refused=s.failed, released=s.released)
    click.echo(f"stopped: {s.associations} associations ({s.rejected} refused), {s.stored} instances stored, "
               f"{s.failed} refused, {s.released} studies released, {held} held in incoming (released after the "
               "next start)")
