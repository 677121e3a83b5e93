"""The grammar of ``HCA_PRIORITY_RULES``: ``LEVEL:source=value[,...]`` (applied by :mod:`hca_assets.sources.routing`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LEVEL", "DICOM_PRIORITIES", "LEVELS", "SOURCES", "Rule", "parse_rules"]

LEVELS: dict[str, int] = {"STAT": 30, "Urgent": 20, "Routine": 10, "Research": 0}  # level -> Dagster priority
DEFAULT_LEVEL = "Routine"
SOURCES = ("folder", "priority", "ae")
DICOM_PRIORITIES = ("STAT", "HIGH", "ROUTINE", "MEDIUM", "LOW")


@dataclass(frozen=True)
class Rule:
    level: str
    source: str
    value: str


def parse_rules(text: str) -> tuple[Rule, ...]:
    """Parse ``LEVEL:source=value[,...]``; a malformed rule raises ValueError naming it."""
    rules = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        level, _, rest = item.partition(":")
        source, _, value = rest.partition("=")
        level, source, value = level.strip(), source.strip(), value.strip()
        if level not in LEVELS:
            raise ValueError(f"priority rule {item!r}: level must be one of {', '.join(LEVELS)}")
        if source not in SOURCES or not value:
            raise ValueError(f"priority rule {item!r}: expected LEVEL:source=value with source in {', '.join(SOURCES)}")
        if source == "priority":
            value = value.upper()
            if value not in DICOM_PRIORITIES:
                raise ValueError(f"priority rule {item!r}: value must be one of {', '.join(DICOM_PRIORITIES)}")
        rules.append(Rule(level, source, value))
    return tuple(rules)
