"""``build_model``: a MODISE for a preset and size (the segment-anything ``build_*`` style).

The parts are built and wired in :mod:`modise.model.build_parts`; this module only resolves presets.
"""

from __future__ import annotations

from typing import Any

from modise.data.panoptic import Category
from modise.model.config import ModelConfig, load_preset
from modise.model.modise_model import MODISE
from modise.model.build_parts import DEFAULT_CATEGORIES

__all__ = ["DEFAULT_CATEGORIES", "build_from_config", "build_model"]


def build_model(preset: str = "m-odise", size: str = "tiny", *, random_weights: bool = False,
                categories: list[Category] | None = None, overrides: dict[str, Any] | None = None) -> MODISE:
    """Build a preset (a name of :func:`~modise.model.presets.preset_names` or a preset YAML file).

    ``random_weights`` builds frozen parts with seeded random weights (offline); ``tiny`` always does.
    ``categories`` map contiguous labels k to dataset categories (default: benign, malignant).
    """
    overrides = dict(overrides or {})
    if random_weights:
        overrides["random_weights"] = True
    return build_from_config(load_preset(preset, size, overrides), categories)


def build_from_config(config: ModelConfig, categories: list[Category] | None = None) -> MODISE:
    """Build MODISE from a validated config (what ``MODISE.from_pretrained`` uses)."""
    return MODISE.from_config(config, categories)
