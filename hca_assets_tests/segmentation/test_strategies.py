import json
from importlib import resources

import pytest

from hca_assets.segmentation.strategies import STRATEGIES_VERSION, pick_strategy, structure


@pytest.mark.parametrize(("modality", "body_part", "name", "prompts"), [
    ("DX", "CHEST", "chest_xray", ("lung", "heart")),
    ("CR", "chest", "chest_xray", ("lung", "heart")),
    ("CT", "CHESTABDOMEN", "abdominal_ct", ("liver", "spleen", "left kidney", "right kidney", "lung", "lesion")),
    ("CT", "Abdomen Pelvis", "abdominal_ct", ("liver", "spleen", "left kidney", "right kidney", "lung", "lesion")),
    ("MR", "HEAD", "brain_mr", ("tumor core", "enhancing tumor", "non-enhancing tumor", "edema")),
    ("US", "ABDOMEN", "ultrasound", ()),
    ("US", None, "ultrasound", ()),
])
def test_picks_the_issue_prompt_sets(modality: str, body_part: str | None, name: str, prompts: tuple[str, ...]) -> None:
    strategy = pick_strategy(modality, body_part)
    assert (strategy.name, strategy.prompts) == (name, prompts)


@pytest.mark.parametrize(("modality", "body_part"), [("CT", None), ("CT", "HEAD"), ("MR", "KNEE"), ("PT", "CHEST"), ("", "")])
def test_unmatched_series_get_the_fallback(modality: str, body_part: str | None) -> None:
    assert pick_strategy(modality, body_part).name == "fallback"


def test_every_prompt_has_a_coded_structure_and_the_version_is_the_files() -> None:
    data = json.loads(resources.files("hca_assets.segmentation").joinpath("strategies.json").read_text())
    assert STRATEGIES_VERSION == data["version"]
    for rule in data["rules"]:
        for prompt in rule["prompts"]:
            s = structure(prompt)
            assert s.type[0].isdigit() and s.category[0].isdigit() and s.truth
    assert structure("left kidney").laterality == ("7771000", "Left")
    with pytest.raises(KeyError):
        structure("pancreas")
