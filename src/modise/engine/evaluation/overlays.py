"""``modise evaluate --overlays N``: one image | ground truth | prediction PNG per pair, drawn by
:func:`modise.viz.overlays.comparison` (the palette ``predict`` uses too)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modise.data.panoptic import Category

from .pairs import Pair, load_pair


def find_image(images_root: Path, file_name: str) -> Path | None:
    """``images_root/file_name``, else the first file there with the same stem."""
    p = images_root / file_name
    if p.is_file():
        return p
    hits = sorted(images_root.glob(Path(file_name).stem + ".*")) if images_root.is_dir() else []
    return hits[0] if hits else None


def write_overlays(pairs: Sequence[Pair], categories: Sequence[Category], out_dir: Path, images_root: Path) -> list[Path]:
    """One PNG per pair; the image panel falls back to grey when the image file is not found."""
    from modise.data.imageio import read_image
    from modise.viz.overlays import comparison

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for pair in pairs:
        gt, pred, _ = load_pair(pair)
        img_path = find_image(images_root, pair.file_name)
        base = np.full(gt.shape, 0.5, dtype=np.float32)
        if img_path is not None:
            px = read_image(img_path).pixels
            if px.shape == gt.shape:
                base = px
        pred_title = "prediction" if pair.pred_png else "prediction (missing)"
        path = out_dir / f"{Path(pair.file_name).stem}.png"
        comparison(base, (gt, pair.gt_segments), (pred, pair.pred_segments), categories, title=pair.file_name, pred_title=pred_title).save(path)
        written.append(path)
    return written
