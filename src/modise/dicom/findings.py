"""The predicted lesion instances of one image as the SEG and the SR both describe them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modise.data.panoptic import Category

from .uids import derived_uid


@dataclass(frozen=True)
class Finding:
    """One predicted instance: its panoptic segment ``segment_id`` (the id in ``panoptic/<name>.png``),
    its SEG segment ``number``, class, rank by score within the class (1 = highest), score, area in
    pixels, centroid (column, row) in DICOM image coordinates (PS3.3 C.18.6.1.1: the top-left corner of
    the image is (0, 0), so the centre of the top-left pixel is (0.5, 0.5)) and its Tracking UID."""

    number: int
    segment_id: int
    category: Category
    rank: int
    score: float | None
    area_px: int
    centroid: tuple[float, float]
    tracking_uid: str
    box: tuple[slice, slice] = (slice(0, 0), slice(0, 0))  # rows, columns of the id map holding the instance

    def mask_in_box(self, ids: np.ndarray) -> np.ndarray:
        """The instance's mask inside :attr:`box`: ``ids[box] == segment_id`` (bool [h, w])."""
        return ids[self.box] == self.segment_id

    @property
    def label(self) -> str:
        """Segment Label / Tracking Identifier: class + rank, e.g. ``mass 2`` (LO, at most 64 chars)."""
        return f"{self.category.name[:58]} {self.rank}"

    @property
    def description(self) -> str:
        score = "no score" if self.score is None else f"score {self.score:.4f}"
        return f"{self.category.name}, rank {self.rank} by score, {score}, panoptic segment id {self.segment_id}"


def image_findings(ids: np.ndarray, segments_info: Sequence[dict[str, Any]], categories: Sequence[Category],
                   fingerprint: str, source_uid: str) -> list[Finding]:
    """The findings of one image, ordered by score (highest first, ties by segment id) and numbered 1..N.

    ids: [H, W] int panoptic id map (0 = nothing); ``segments_info``: its ``{id, category_id, score}``
    records. Tracking UIDs derive from (fingerprint, source SOP Instance UID, segment id): the same
    model on the same image gives the same instance the same UID. One pass over the map finds every
    segment's box; the rest looks inside the boxes only (a 3328x4096 map holds a few small lesions)."""
    from scipy.ndimage import find_objects

    by_id = {c.id: c for c in categories}
    boxes = find_objects(ids.astype(np.int32, copy=False)) if ids.size else []
    segs = sorted(segments_info, key=lambda s: (-(s.get("score") or 0.0), s["id"]))
    ranks: dict[int, int] = {}
    out = []
    for number, s in enumerate(segs, start=1):
        cat = by_id[s["category_id"]]
        ranks[cat.id] = ranks.get(cat.id, 0) + 1
        box = boxes[s["id"] - 1] if 0 < s["id"] <= len(boxes) and boxes[s["id"] - 1] is not None else (slice(0, 0),) * 2
        rows, cols = np.nonzero(ids[box] == s["id"])
        centroid = ((float(cols.mean()) + box[1].start + 0.5, float(rows.mean()) + box[0].start + 0.5)
                    if rows.size else (0.0, 0.0))
        score = None if s.get("score") is None else float(s["score"])
        out.append(Finding(number, int(s["id"]), cat, ranks[cat.id], score, int(rows.size), centroid,
                           derived_uid(fingerprint, source_uid, "instance", s["id"]), box))
    return out
