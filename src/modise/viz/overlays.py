"""Overlays a person can read, after the paper's Fig. 2: panoptic, instance and heatmap views,
composed into titled panels with a class legend.

- panoptic: every segment filled in its class colour (semi-transparent) with its outline;
- instance: each instance outlined in its class colour (as in the panoptic view), labelled "class score";
- heatmap: the per-pixel lesion probability (max over lesion classes) as a colour map.

:func:`figure2` (``modise predict``, the demo) and :func:`comparison` (``modise evaluate``:
image | ground truth | prediction) share the views, the palette and the panel layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from modise.data.panoptic import Category

from .palette import UNKNOWN_COLOUR, class_colour

if TYPE_CHECKING:
    from modise.pipeline import PanopticResult

PANEL_GAP, TITLE_H, LEGEND_H = 4, 16, 16
LABEL_GAP = 6  # px between a label's class name and its score (the default font's space is ~2 px)


def draw_label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], name: str, score: float | None, colour) -> None:
    """Write ``name`` and, ``LABEL_GAP`` px after it, ``score`` (two decimals) at ``xy`` in ``colour``."""
    draw.text(xy, name, fill=colour)
    if score is not None:
        draw.text((xy[0] + round(draw.textlength(name)) + LABEL_GAP, xy[1]), f"{float(score):.2f}", fill=colour)


def grey_rgb(pixels: np.ndarray) -> np.ndarray:
    """[H, W] grey in [0, 1] -> [H, W, 3] uint8."""
    g = np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The inner border (``width`` px) of a bool mask [H, W]."""
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, iterations=max(1, width))


def panoptic_view(pixels: np.ndarray, ids: np.ndarray, segments: Sequence[dict], categories: Sequence[Category], alpha: float = 0.45) -> np.ndarray:
    """[H, W] grey + segment ids -> RGB uint8 with class-coloured, outlined segments."""
    rgb = grey_rgb(pixels).astype(np.float32)
    width = max(1, round(max(ids.shape) / 300))
    for s in segments:
        m = ids == s["id"]
        colour = np.array(class_colour(categories, s["category_id"]), np.float32)
        rgb[m] = (1 - alpha) * rgb[m] + alpha * colour
        rgb[outline(m, width)] = colour
    return rgb.astype(np.uint8)


def instance_view(pixels: np.ndarray, masks: np.ndarray, labels: Sequence[int], scores: Sequence[float],
                  categories: Sequence[Category], min_score: float = 0.3) -> np.ndarray:
    """[H, W] grey + instance masks [N, H, W] -> RGB uint8, each outlined in its class colour and
    labelled 'class score'.

    Instances scored below ``min_score`` are left out: top-k instance inference returns many
    weak candidates, and drawing them all hides the image.
    """
    rgb = grey_rgb(pixels)
    width = max(1, round(max(pixels.shape) / 250))
    texts = []
    for m, lab, sc in zip(masks, labels, scores):
        m = np.asarray(m, bool)
        if not m.any() or float(sc) < min_score:
            continue
        known = 0 <= int(lab) < len(categories)  # labels index the category list
        colour = class_colour(categories, categories[int(lab)].id) if known else UNKNOWN_COLOUR
        rgb[outline(m, width)] = colour
        ys, xs = np.nonzero(m)
        texts.append(((int(xs.min()), max(0, int(ys.min()) - 12)), categories[int(lab)].name if known else str(lab), sc, colour))
    im = Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    for xy, name, score, colour in texts:
        draw_label(draw, xy, name, score, colour)
    return np.asarray(im)


def heatmap_view(pixels: np.ndarray, prob: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """[H, W] grey + lesion probability [H, W] in [0, 1] -> RGB uint8 (jet over the image)."""
    import matplotlib

    heat = matplotlib.colormaps["jet"](np.clip(prob, 0, 1))[..., :3] * 255
    a = alpha * np.clip(prob, 0, 1)[..., None] ** 0.5
    return ((1 - a) * grey_rgb(pixels) + a * heat).astype(np.uint8)


def label_segments(view: np.ndarray, ids: np.ndarray, segments: Sequence[dict], categories: Sequence[Category]) -> np.ndarray:
    """Write 'class [score]' above each segment of a view [H, W, 3], in its class colour."""
    im = Image.fromarray(view)
    draw = ImageDraw.Draw(im)
    names = {c.id: c.name for c in categories}
    for s in segments:
        ys, xs = np.nonzero(ids == s["id"])
        if not len(xs):
            continue
        draw_label(draw, (int(xs.min()), max(0, int(ys.min()) - 12)), names.get(int(s["category_id"]), str(s["category_id"])),
                   s.get("score"), class_colour(categories, s["category_id"]))
    return np.asarray(im)


def compose(panels: Sequence[tuple[str, np.ndarray]], categories: Sequence[Category]) -> Image.Image:
    """Titled panels (same size [H, W, 3]) side by side, the class legend in its own row below."""
    ph, pw = panels[0][1].shape[:2]
    canvas = Image.new("RGB", (pw * len(panels) + PANEL_GAP * (len(panels) - 1), ph + TITLE_H + LEGEND_H), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (title, arr) in enumerate(panels):
        x = i * (pw + PANEL_GAP)
        canvas.paste(Image.fromarray(arr), (x, TITLE_H))
        draw.text((x + 2, 2), title, fill=(255, 255, 255))
    x = 2
    for c in categories:
        draw.text((x, ph + TITLE_H + 2), c.name, fill=class_colour(categories, c.id))
        x += round(draw.textlength(c.name)) + 16
    return canvas


def display_scale(shape: tuple[int, int], max_side: int) -> tuple[int, int]:
    """Display size (H, W): the longest side at ``max_side``, small images enlarged at most 4x."""
    h, w = shape
    scale = min(4.0, max_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize(arr: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """Resize a 2-D array (float, int ids or bool) to ``size`` = (H, W), keeping its dtype."""
    a = np.asarray(arr)
    if tuple(a.shape) == tuple(size):
        return a
    if a.dtype == bool:
        return np.asarray(Image.fromarray(a.astype(np.uint8)).resize(size[::-1], resample)) > 0
    if np.issubdtype(a.dtype, np.integer):
        return np.asarray(Image.fromarray(a.astype(np.int32)).resize(size[::-1], resample)).astype(a.dtype)
    return np.asarray(Image.fromarray(a.astype(np.float32)).resize(size[::-1], resample))


def figure2(pixels: np.ndarray, result: PanopticResult, categories: Sequence[Category], max_side: int = 512,
            gt: tuple | None = None) -> Image.Image:
    """Side-by-side [image | (ground truth) | panoptic | instance | heatmap] panel with titles.

    ``result``: a prediction (``ids``, ``segments_info``, ``instances``, ``sem_seg`` [K, h, w], which
    may be at the inference resolution); ``gt``: (segment ids [H, W], segments) drawn as a ground-truth panel."""
    ids, segments, inst = result.ids, result.segments_info, result.instances
    masks, labels, scores = inst.masks, np.asarray(inst.labels).tolist(), np.asarray(inst.scores).tolist()
    sem = result.sem_seg
    prob = sem.max(axis=0) if sem.shape[0] else np.zeros(ids.shape, np.float32)
    # Draw at display size (small images are enlarged up to 4x), so outlines and labels stay legible.
    size = display_scale(ids.shape, max_side)
    pixels, prob = resize(pixels, size, Image.BILINEAR), resize(prob, size, Image.BILINEAR)
    ids = resize(ids, size, Image.NEAREST)
    masks = np.stack([resize(m, size, Image.NEAREST) for m in masks]) if len(masks) else np.zeros((0, *size), bool)
    panels = [("image", grey_rgb(pixels))]
    if gt is not None:
        panels.append(("ground truth", panoptic_view(pixels, resize(np.asarray(gt[0]), size, Image.NEAREST), gt[1], categories)))
    panels += [
        ("panoptic", panoptic_view(pixels, ids, segments, categories)),
        ("instances", instance_view(pixels, masks, labels, scores, categories)),
        ("lesion heatmap", heatmap_view(pixels, prob)),
    ]
    return compose(panels, categories)


def comparison(pixels: np.ndarray, gt: tuple[np.ndarray, Sequence[dict]], pred: tuple[np.ndarray, Sequence[dict]],
               categories: Sequence[Category], title: str = "image", pred_title: str = "prediction", max_side: int = 384) -> Image.Image:
    """[image | ground truth | prediction] panel for ``modise evaluate``: ``gt`` and ``pred`` are
    (segment ids [H, W], segments); segments are labelled with class (and score when given)."""
    size = display_scale(gt[0].shape, max_side)
    pixels = resize(pixels, size, Image.BILINEAR)
    panels = [(title, grey_rgb(pixels))]
    for name, (ids, segments) in (("ground truth", gt), (pred_title, pred)):
        ids = resize(np.asarray(ids), size, Image.NEAREST)
        panels.append((name, label_segments(panoptic_view(pixels, ids, segments, categories), ids, segments, categories)))
    return compose(panels, categories)
