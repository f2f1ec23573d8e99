"""MAM-E prompt vocabulary: the exact strings MAM-E was trained on."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from modise.cli import app
from modise.errors import ModiseError
from modise.synthesis import build_prompt
from modise.synthesis.prompts import area_word


def test_full_prompt_area_first():
    assert build_prompt("siemens", "CC", "low", "medium") == "a siemens mammogram in CC view with medium area and low density"


def test_density_first_and_dropped_parts():
    assert build_prompt("siemens", "MLO", "high", "small", density_first=True) == (
        "a siemens mammogram in MLO view with high density and small area"
    )
    assert build_prompt("hologic", "CC", area="big") == "a hologic mammogram in CC view with big area"
    assert build_prompt("siemens", "CC", density="very low") == "a siemens mammogram in CC view with very low density"
    assert build_prompt() == "a mammogram"


def test_birads_letters_and_case():
    assert build_prompt("Hologic", "mlo", "D") == "a hologic mammogram in MLO view with very high density"
    assert build_prompt(density="DENSITY B") == "a mammogram with low density"


def test_unknown_words_are_refused():
    with pytest.raises(ModiseError, match="vendor"):
        build_prompt("ge")
    with pytest.raises(ModiseError, match="density"):
        build_prompt(density="E")


def test_area_thresholds():
    assert [area_word(f) for f in (0.1, 0.39, 0.4, 0.59, 0.6, 0.9)] == ["small", "small", "medium", "medium", "big", "big"]


def test_print_prompt_is_last_line_and_needs_no_out():
    res = CliRunner().invoke(
        app, ["generate", "--vendor", "siemens", "--view", "MLO", "--density", "high", "--area", "small",
              "--density-first", "--print-prompt"]
    )
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == "a siemens mammogram in MLO view with high density and small area"
