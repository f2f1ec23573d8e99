"""Overlays for a person to look at: image | ground truth | prediction, class colours, scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modise.data.panoptic import Category

_PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                     (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]) / 255.0


def class_colours(categories: Sequence[Category]) -> dict[int, np.ndarray]:
    return {c.id: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(categories)}


def _find_image(images_root: Path, file_name: str) -> Path | None:
    p = images_root / file_name
    if p.is_file():
        return p
    hits = sorted(images_root.glob(Path(file_name).stem + ".*")) if images_root.is_dir() else []
    return hits[0] if hits else None


def _paint(ax, base: np.ndarray, ids: np.ndarray, segments: Sequence[dict], colours, names, title: str) -> None:
    rgb = np.repeat(base[..., None], 3, axis=2).astype(float)
    for s in segments:
        m = ids == s["id"]
        if not m.any():
            continue
        col = colours.get(int(s["category_id"]), np.ones(3))
        rgb[m] = 0.55 * rgb[m] + 0.45 * col
        edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
        rgb[edge] = col
        ys, xs = np.nonzero(m)
        label = names.get(int(s["category_id"]), str(s["category_id"]))
        if "score" in s:
            label += f" {float(s['score']):.2f}"
        ax.text(xs.mean(), ys.min(), label, color="white", fontsize=7, ha="center", va="bottom",
                bbox={"facecolor": col, "alpha": 0.7, "pad": 1, "lw": 0})
    ax.imshow(np.clip(rgb, 0, 1))
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def write_overlays(pairs: Sequence, categories: Sequence[Category], out_dir: Path, images_root: Path) -> list[Path]:
    """One PNG per pair (see :class:`~.folders.Pair`); the image panel falls back to grey
    when the image file is not found."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from modise.data.imageio import read_image

    from .folders import load_pair

    out_dir.mkdir(parents=True, exist_ok=True)
    colours = class_colours(categories)
    names = {c.id: c.name for c in categories}
    written = []
    for pair in pairs:
        gt, pred, _ = load_pair(pair)
        img_path = _find_image(images_root, pair.file_name)
        base = np.full(gt.shape, 0.5, dtype=np.float32)
        if img_path is not None:
            px = read_image(img_path).pixels
            if px.shape == gt.shape:
                base = px
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), dpi=110)
        axes[0].imshow(base, cmap="gray", vmin=0, vmax=1)
        axes[0].set_title(pair.file_name, fontsize=9)
        axes[0].axis("off")
        _paint(axes[1], base, gt, pair.gt_segments, colours, names, "ground truth")
        _paint(axes[2], base, pred, pair.pred_segments, colours, names, "prediction" if pair.pred_png else "prediction (missing)")
        fig.tight_layout()
        path = out_dir / f"{Path(pair.file_name).stem}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
