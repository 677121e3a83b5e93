"""The grammar of ``HCA_EXPORT_DESTINATION``: a DICOMweb root or ``dicom://CALLED_AE@host[:port]`` (used by
:mod:`hca_assets.export.destinations`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

__all__ = ["Destination", "parse_destination"]


@dataclass(frozen=True)
class Destination:
    """Where results go: ``stow`` (``url`` = DICOMweb root) or ``cstore`` (``host``, ``port``, ``called_ae``)."""

    kind: Literal["stow", "cstore"]
    url: str = ""
    host: str = ""
    port: int = 0
    called_ae: str = ""
    calling_ae: str = "HCA"

    def describe(self) -> str:
        """Where it points, for tables and logs (never credentials)."""
        return self.url if self.kind == "stow" else f"{self.called_ae}@{self.host}:{self.port}"



def parse_destination(text: str, calling_ae: str = "HCA") -> Destination | None:
    """The destination ``text`` names; None when it is empty (export off); ValueError (without the text, which may
    hold credentials) when it is malformed."""
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.hostname:
        if parts.username or parts.password:
            raise ValueError("`export_destination` must not carry credentials: set HCA_EXPORT_USER / "
                             "HCA_EXPORT_PASSWORD or HCA_EXPORT_TOKEN")
        return Destination("stow", url=text.rstrip("/"), calling_ae=calling_ae)
    if parts.scheme == "dicom" and parts.hostname and parts.username and not parts.password:
        try:
            port = parts.port or 104
        except ValueError:
            port = 0
        if 0 < port < 65536 and 0 < len(parts.username) <= 16 and 0 < len(calling_ae) <= 16:
            return Destination("cstore", host=parts.hostname, port=port, called_ae=parts.username, calling_ae=calling_ae)
    raise ValueError("`export_destination` must be a DICOMweb root (http(s)://host[:port]/path) or "
                     "dicom://CALLED_AE@host[:port] (AE titles of 1-16 characters)")
