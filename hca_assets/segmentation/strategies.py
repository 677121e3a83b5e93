"""Prompt strategies as versioned data (``strategies.json``): which prompts a series gets from its modality and
BodyPartExamined, and each prompt's structure name, SNOMED CT coding and ground-truth masks.

``STRATEGIES_VERSION`` is part of the segmentation code_version: editing the file means bumping it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["STRATEGIES_VERSION", "Strategy", "Structure", "pick_strategy", "structure"]


@dataclass(frozen=True)
class Structure:
    """What a prompt segments: a file-safe name, SEG codes (SCT value, meaning) and the truth masks it unites."""

    prompt: str
    name: str
    category: tuple[str, str]
    type: tuple[str, str]
    laterality: tuple[str, str] | None
    truth: tuple[str, ...]


@dataclass(frozen=True)
class Strategy:
    name: str
    prompts: tuple[str, ...]


@cache
def _data() -> dict:  # type: ignore[type-arg]
    return json.loads(resources.files(__package__).joinpath("strategies.json").read_text())


STRATEGIES_VERSION: str = _data()["version"]


def pick_strategy(modality: str, body_part: str | None) -> Strategy:
    """The first rule matching ``modality`` and ``body_part`` (case-insensitive, spaces ignored), else the fallback."""
    mod = (modality or "").strip().upper()
    part = (body_part or "").replace(" ", "").upper()
    for rule in _data()["rules"]:
        if mod in rule["modalities"] and ("*" in rule["body_parts"] or part in rule["body_parts"]):
            return Strategy(rule["name"], tuple(rule["prompts"]))
    fallback = _data()["fallback"]
    return Strategy(fallback["name"], tuple(fallback["prompts"]))


def structure(prompt: str) -> Structure:
    """The structure a prompt names; ``KeyError`` for a prompt no strategy knows."""
    s = _data()["structures"][prompt]
    lat = s.get("laterality")
    return Structure(prompt, s["name"], tuple(s["category"]), tuple(s["type"]), tuple(lat) if lat else None,
                     tuple(s["truth"]))
