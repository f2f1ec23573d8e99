"""Panoptic segments from a semantic model's output: one instance per connected component of each
class's label region, scored by the class's mean softmax probability inside it. This is how a
semantic network (nnU-Net) enters the PQ/RQ/SQ and AP protocol of the instance models."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def components_to_segments(
    labels: np.ndarray, probabilities: np.ndarray, category_ids: Sequence[int], min_area: int = 0, connectivity: int = 2
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``labels`` [H, W] (0 background, c = ``category_ids[c - 1]``) and ``probabilities`` [C+1, H, W]
    (softmax, background first) -> (segment id map [H, W] int32, [{id, category_id, score, area, isthing}]).

    ``connectivity``: 2 joins diagonal neighbours (8-connected), 1 only edge neighbours.
    Components smaller than ``min_area`` pixels are dropped (left as background)."""
    from scipy import ndimage

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [H, W], not {labels.shape}")
    if probabilities.shape != (len(category_ids) + 1, *labels.shape):
        raise ValueError(f"probabilities must be [{len(category_ids) + 1}, H, W] for {len(category_ids)} classes, not {probabilities.shape}")
    structure = ndimage.generate_binary_structure(2, connectivity)
    ids = np.zeros(labels.shape, np.int32)
    segments: list[dict[str, Any]] = []
    for c, cat in enumerate(category_ids, start=1):
        comps, n = ndimage.label(labels == c, structure=structure)
        if n == 0:
            continue
        index = np.arange(1, n + 1)
        areas = ndimage.sum_labels(np.ones_like(comps), comps, index)
        scores = ndimage.mean(probabilities[c], comps, index)
        for k, area, score in zip(index, areas, scores):
            if area < max(min_area, 1):
                continue
            sid = len(segments) + 1
            ids[comps == k] = sid
            segments.append({"id": sid, "category_id": int(cat), "score": float(score), "area": int(area), "isthing": 1})
    return ids, segments


def write_semantic_predictions(
    out: str | Path, categories: Sequence[Any], items: Iterable[tuple[dict[str, Any], np.ndarray, np.ndarray]],
    min_area: int = 0, description: str = "",
) -> dict[str, Any]:
    """Write ``(image record, labels [H, W], probabilities [C+1, H, W])`` items as a canonical panoptic
    prediction folder ``out`` (segments from :func:`components_to_segments`, atomically: all or nothing).
    ``categories``: the dataset's, in label order (label c = ``categories[c - 1]``). Returns panoptic.json."""
    from modise.data.panoptic import PanopticFolderWriter
    from modise.outputs import output_dir

    with output_dir(out, overwrite=True) as stage:
        writer = PanopticFolderWriter(stage, categories, info={"description": description} if description else None)
        for record, labels, probabilities in items:
            ids, segments = components_to_segments(labels, probabilities, [c.id for c in categories], min_area)
            writer.add(record, ids, segments)
        return writer.finish()
