"""The DICOMweb sensor: pulls new studies from the PACS into the landing zone (:mod:`hca_assets.sources.dicomweb`).

Its cursor (sensor state) is the poller's; a released study is a folder in the landing zone, which the
``landing_sensor`` claims into an ingest batch on its next tick, as any dropped folder. Stopped by default unless
``HCA_DICOMWEB_URL`` is set where the code location loads. Logs counts only (no UID, no URL, no credential).
"""

from __future__ import annotations

import dagster as dg

from hca_assets.config.secrets import DICOMWEB, secret
from hca_assets.orchestration.resources import DicomwebServer, PseudonymKey, SettingsResource
from hca_assets.sources.dicomweb import Credentials, DicomwebError, DicomwebPoller

__all__ = ["dicomweb_sensor"]


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING if secret(DICOMWEB["url"]) else dg.DefaultSensorStatus.STOPPED,
    description="Pulls new and incomplete studies from the PACS over DICOMweb (QIDO-RS / WADO-RS) and releases each "
                "complete study into the landing zone, where the landing sensor claims it.",
)
def dicomweb_sensor(context: dg.SensorEvaluationContext, storage: SettingsResource, dicomweb: DicomwebServer,
                    pseudonym_key: PseudonymKey) -> dg.SkipReason:
    if not dicomweb.url:
        return dg.SkipReason("HCA_DICOMWEB_URL is not set: no PACS to pull from")
    settings = storage.settings()
    settings.ensure_restricted()
    poller = DicomwebPoller(settings, dicomweb.url, Credentials(dicomweb.user, dicomweb.password, dicomweb.token),
                            pseudonym_key.key(settings), cursor=context.cursor)
    try:
        poller.poll()
    except DicomwebError as err:
        context.log.error(str(err))
        return dg.SkipReason(str(err))
    finally:
        if poller.cursor != context.cursor:
            context.update_cursor(poller.cursor)
    s = poller.stats
    summary = (f"dicomweb: {s.studies_seen} studies with news, {s.instances_retrieved} instances retrieved, "
               f"{s.released} studies released into the landing zone, {s.incomplete} incomplete")
    context.log.info(summary)
    return dg.SkipReason(summary)
