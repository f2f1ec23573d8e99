"""Overlays a person can read, after the paper's Fig. 2: panoptic, instance and heatmap views.

- panoptic: every segment filled in its class colour (semi-transparent) with its outline;
- instance: each instance outlined in its own colour, labelled "class score";
- heatmap: the per-pixel lesion probability (max over lesion classes) as a colour map.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from modise.data.panoptic import Category

CLASS_COLOURS = [(255, 80, 80), (80, 200, 255), (255, 210, 60), (140, 255, 120), (220, 120, 255), (255, 150, 40)]


def _grey_rgb(pixels: np.ndarray) -> np.ndarray:
    g = np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, iterations=max(1, width))


def class_colour(categories: Sequence[Category], category_id: int) -> tuple[int, int, int]:
    idx = next((i for i, c in enumerate(categories) if c.id == category_id), 0)
    return CLASS_COLOURS[idx % len(CLASS_COLOURS)]


def panoptic_view(pixels: np.ndarray, ids: np.ndarray, segments: Sequence[dict], categories: Sequence[Category], alpha: float = 0.45) -> np.ndarray:
    """[H, W] grey + segment ids -> RGB uint8 with class-coloured, outlined segments."""
    rgb = _grey_rgb(pixels).astype(np.float32)
    width = max(1, round(max(ids.shape) / 300))
    for s in segments:
        m = ids == s["id"]
        colour = np.array(class_colour(categories, s["category_id"]), np.float32)
        rgb[m] = (1 - alpha) * rgb[m] + alpha * colour
        rgb[_outline(m, width)] = colour
    return rgb.astype(np.uint8)


def instance_view(pixels: np.ndarray, masks: np.ndarray, labels: Sequence[int], scores: Sequence[float],
                  categories: Sequence[Category], min_score: float = 0.3) -> np.ndarray:
    """[H, W] grey + instance masks [N, H, W] -> RGB uint8, each outlined and labelled 'class score'.

    Instances scored below ``min_score`` are left out: top-k instance inference returns many
    weak candidates, and drawing them all hides the image.
    """
    import matplotlib

    rgb = _grey_rgb(pixels)
    width = max(1, round(max(pixels.shape) / 250))
    cmap = matplotlib.colormaps["tab10"]
    texts = []
    for i, (m, lab, sc) in enumerate(zip(masks, labels, scores)):
        m = np.asarray(m, bool)
        if not m.any() or float(sc) < min_score:
            continue
        colour = tuple(int(255 * c) for c in cmap(i % 10)[:3])
        rgb[_outline(m, width)] = colour
        ys, xs = np.nonzero(m)
        name = categories[int(lab)].name if 0 <= int(lab) < len(categories) else str(lab)
        texts.append(((int(xs.min()), max(0, int(ys.min()) - 12)), f"{name} {float(sc):.2f}", colour))
    im = Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    for xy, text, colour in texts:
        draw.text(xy, text, fill=colour)
    return np.asarray(im)


def heatmap_view(pixels: np.ndarray, prob: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """[H, W] grey + lesion probability [H, W] in [0, 1] -> RGB uint8 (jet over the image)."""
    import matplotlib

    heat = matplotlib.colormaps["jet"](np.clip(prob, 0, 1))[..., :3] * 255
    a = alpha * np.clip(prob, 0, 1)[..., None] ** 0.5
    return ((1 - a) * _grey_rgb(pixels) + a * heat).astype(np.uint8)


def figure2(pixels: np.ndarray, result: dict, categories: Sequence[Category], max_side: int = 512, gt: tuple | None = None) -> Image.Image:
    """Side-by-side [image | (ground truth) | panoptic | instance | heatmap] panel with titles."""
    ids, segments = result["panoptic_seg"]
    ids = np.asarray(ids.cpu() if hasattr(ids, "cpu") else ids)
    inst = result.get("instances", {})
    masks = np.asarray(inst["masks"].cpu()) if "masks" in inst else np.zeros((0, *ids.shape), bool)
    labels = inst["labels"].tolist() if "labels" in inst else []
    scores = inst["scores"].tolist() if "scores" in inst else []
    sem = result["sem_seg"]
    sem = np.asarray(sem.float().cpu() if hasattr(sem, "cpu") else sem)
    prob = sem.max(axis=0) if sem.shape[0] else np.zeros(ids.shape, np.float32)
    # Draw at display size (small images are enlarged up to 4x), so outlines and labels stay legible.
    h, w = ids.shape
    scale = min(4.0, max_side / max(h, w))
    ph, pw = max(1, round(h * scale)), max(1, round(w * scale))
    if (ph, pw) != (h, w):
        pixels, prob = _resize(pixels, (ph, pw), Image.BILINEAR), _resize(prob, (ph, pw), Image.BILINEAR)
        ids = _resize(ids, (ph, pw), Image.NEAREST)
        masks = np.stack([_resize(m, (ph, pw), Image.NEAREST) for m in masks]) if len(masks) else np.zeros((0, ph, pw), bool)
        if gt is not None:
            gt = (_resize(np.asarray(gt[0]), (ph, pw), Image.NEAREST), gt[1])
    panels = [("image", _grey_rgb(pixels))]
    if gt is not None:
        panels.append(("ground truth", panoptic_view(pixels, gt[0], gt[1], categories)))
    panels += [
        ("panoptic", panoptic_view(pixels, ids, segments, categories)),
        ("instances", instance_view(pixels, masks, labels, scores, categories)),
        ("lesion heatmap", heatmap_view(pixels, prob)),
    ]
    canvas = Image.new("RGB", (pw * len(panels) + 4 * (len(panels) - 1), ph + 32), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, (title, arr) in enumerate(panels):
        x = i * (pw + 4)
        canvas.paste(Image.fromarray(arr), (x, 16))
        draw.text((x + 2, 2), title, fill=(255, 255, 255))
    x = 2  # legend in the class colours, in its own row under the panels
    for c in categories:
        draw.text((x, ph + 18), c.name, fill=class_colour(categories, c.id))
        x += 7 * len(c.name) + 16
    return canvas


def _resize(arr: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """Resize a 2-D array (float, int ids or bool) to ``size`` = (H, W), keeping its dtype."""
    a = np.asarray(arr)
    if a.dtype == bool:
        return np.asarray(Image.fromarray(a.astype(np.uint8)).resize(size[::-1], resample)) > 0
    if np.issubdtype(a.dtype, np.integer):
        return np.asarray(Image.fromarray(a.astype(np.int32)).resize(size[::-1], resample)).astype(a.dtype)
    return np.asarray(Image.fromarray(a.astype(np.float32)).resize(size[::-1], resample))
