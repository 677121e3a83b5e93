"""Configuration: every ``HCA_*`` setting as one typed field (:mod:`.settings`), the per-file limits, the grammars
of settings that have one, and the names of the secrets (:mod:`.secrets`)."""

from hca_assets.config.limits import DEFAULT_LIMITS, Limits
from hca_assets.config.settings import EXECUTORS, SEGMENTERS, Settings, is_uri, join

__all__ = ["DEFAULT_LIMITS", "EXECUTORS", "SEGMENTERS", "Limits", "Settings", "is_uri", "join"]
