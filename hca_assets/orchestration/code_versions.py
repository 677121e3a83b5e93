"""Every settings-dependent asset's code_version, computed from one :class:`Settings` (no Dagster here).

``build_defs(settings)`` stamps these on the assets, so a changed embedder, preprocessing version, prompt set or
de-identification profile changes the loaded code_versions and declarative automation re-runs every batch; the
asset decorators declare :data:`DEFAULTS` (the default settings' versions) for code that uses them directly. At run
time an asset takes its version from :func:`require`, so the rows it writes carry the version it declares.
"""

from __future__ import annotations

from hca_assets.config import Settings
from hca_assets.dicom import pixels
from hca_assets.models import embedder_code_version
from hca_assets.segmentation.backends import segmenter_code_version
from hca_assets.stages.deid import profile_from_settings

__all__ = ["DEFAULTS", "StaleDefinition", "code_versions", "require"]


class StaleDefinition(RuntimeError):
    """The loaded asset definition was built with other settings than the resource it runs with."""


def code_versions(settings: Settings) -> dict[str, str]:
    """Asset name -> code_version under ``settings``: de-identification (profile options), images (preprocessing),
    embeddings (backend, model, preprocessing) and their drift, segmentations (backend, prompt strategies, preprocessing) and
    their evaluation."""
    net = f"+net{settings.deid_net_every}" if settings.deid_net else ""
    deid = f"deid-2+{profile_from_settings(settings).name}{net}"
    segmentation = segmenter_code_version(settings)
    return {"deid_staged": deid, "deid_dicom": deid, "images": f"images-1+{pixels.PREPROCESSING_VERSION}",
            "embeddings": embedder_code_version(settings),
            "embedding_drift": f"drift-1+{embedder_code_version(settings)}", "segmentations": segmentation,
            "segmentation_eval": f"seg-eval-1+{segmentation}", "reports": f"reports-1+{settings.cxr_model_version}"}


DEFAULTS = code_versions(Settings())


def require(asset: str, declared: str | None, settings: Settings) -> str:
    """``asset``'s code_version under ``settings``, if it is the one the loaded definition declares; else
    :class:`StaleDefinition` (one line: the code location must be reloaded with these settings)."""
    version = code_versions(settings)[asset]
    if version != declared:
        raise StaleDefinition(f"{asset}: the resources give code_version {version} but the loaded definition declares "
                              f"{declared}: reload the code location (or build the Definitions with these settings)")
    return version
