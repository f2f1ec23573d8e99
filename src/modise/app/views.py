"""What the Segment tab shows: the panoptic overlay labelled with scores, the lesion table and
per-class heatmaps. Colours and outlines are the prediction overlays' (``modise predict``), so the
app and the CLI's figures agree."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modise.data.panoptic import Category


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def category_name(categories: Sequence[Category], category_id: int) -> str:
    return next((c.name for c in categories if c.id == category_id), str(category_id))


def labelled_overlay(pixels: np.ndarray, ids: np.ndarray, segments: Sequence[dict], categories: Sequence[Category]):
    """[H, W] grey in [0, 1] + segment ids -> PIL RGB: segments filled and outlined in their class
    colour, each labelled ``#n class score`` above its box."""
    from PIL import Image, ImageDraw

    from modise.viz.overlays import panoptic_view
    from modise.viz.palette import class_colour

    im = Image.fromarray(panoptic_view(pixels, ids, segments, categories))
    draw = ImageDraw.Draw(im)
    size = max(11, round(max(ids.shape) / 40))
    font = _font(size)
    for n, s in enumerate(segments, start=1):
        x, y, _, _ = s["bbox"]
        text = f"#{n} {category_name(categories, s['category_id'])} {s['score']:.2f}"
        colour = class_colour(categories, s["category_id"])
        # above the box, or just inside it when the box touches the top edge
        tx, ty = x + 2, (y - size - 4 if y >= size + 4 else y + 2)
        box = draw.textbbox((tx, ty), text, font=font)
        draw.rectangle(box, fill=(0, 0, 0))
        draw.text((tx, ty), text, fill=colour, font=font)
    return im


def lesion_rows(segments: Sequence[dict], categories: Sequence[Category], pixel_spacing: Sequence[float] | None) -> tuple[list[str], list[list]]:
    """Table of lesions: (headers, rows) with the area in mm² when the pixel spacing is known, else px."""
    mm2 = float(pixel_spacing[0]) * float(pixel_spacing[1]) if pixel_spacing else None
    headers = ["lesion", "class", "score", "area (mm²)" if mm2 else "area (px)", "box x,y,w,h (px)"]
    rows = []
    for n, s in enumerate(segments, start=1):
        area = round(s["area"] * mm2, 2) if mm2 else int(s["area"])
        rows.append([n, category_name(categories, s["category_id"]), round(float(s["score"]), 3), area,
                     ",".join(str(int(v)) for v in s["bbox"])])
    return headers, rows


def class_heatmaps(pixels: np.ndarray, sem_seg: np.ndarray, categories: Sequence[Category]) -> list[tuple]:
    """Per-class score maps [K, H, W] -> [(PIL heatmap over the image, "class (score max v)")].

    Mask2Former's semantic scores sum class probability x mask over queries, so they are not
    probabilities and can pass 1; the colour map clips at 1, as ``modise predict``'s heatmaps do,
    and the caption calls the value a score, not a probability."""
    from PIL import Image

    from modise.viz.overlays import heatmap_view

    return [(Image.fromarray(heatmap_view(pixels, sem_seg[k])), f"{c.name} (score max {float(sem_seg[k].max()):.2f})")
            for k, c in enumerate(categories)]
