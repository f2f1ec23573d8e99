"""The one class palette: class k of a category list (in its order) -> ``CLASS_COLOURS[k % n]``."""

from __future__ import annotations

from collections.abc import Sequence

from modise.data.panoptic import Category

CLASS_COLOURS = [(255, 80, 80), (80, 200, 255), (255, 210, 60), (140, 255, 120), (220, 120, 255), (255, 150, 40)]
UNKNOWN_COLOUR = (255, 255, 255)  # a category id not in the list


def class_colour(categories: Sequence[Category], category_id: int) -> tuple[int, int, int]:
    """RGB uint8 colour of ``category_id``, from its position in ``categories``."""
    idx = next((i for i, c in enumerate(categories) if c.id == int(category_id)), None)
    return UNKNOWN_COLOUR if idx is None else CLASS_COLOURS[idx % len(CLASS_COLOURS)]
