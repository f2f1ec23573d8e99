"""COCO instance results beside the panoptic format: the one RLE encoder, the typed instances of a
prediction and their COCO result records (``instances.json``, what ``evaluate`` computes AP on).

detectron2's COCOEvaluator stores Mask2Former's instances as COCO results: RLE ``segmentation`` with
text ``counts``, ``score``, ``category_id`` (evaluation/coco_evaluation.py ``instances_to_coco_json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def encode_rle(mask: Any) -> dict[str, Any]:
    """A [H, W] mask (numpy array or torch tensor on any device; non-zero = inside) -> COCO RLE with
    ``counts`` as text (JSON-ready). A tensor is transposed on its device, so only a column-major
    uint8 copy reaches the CPU."""
    from pycocotools import mask as mask_utils

    if hasattr(mask, "detach"):
        fortran = mask.detach().bool().t().contiguous().cpu().numpy().view(np.uint8).T  # a Fortran-ordered [H, W] view
    else:
        fortran = np.asfortranarray(np.asarray(mask) != 0, dtype=np.uint8)
    rle = mask_utils.encode(fortran)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


@dataclass
class Instances:
    """Mask2Former's top-k instances of one image, best first (masks may overlap).

    ``labels`` [N] indices into the categories; ``scores`` [N]; ``masks`` [N, h, w] bool, at the
    image size, or at the inference resolution when ``rles`` (the full-size masks as COCO RLE) is set."""

    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray
    rles: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.labels)


def instance_records(instances: Instances, categories: Sequence[Any], image_id: Any = None) -> list[dict[str, Any]]:
    """COCO result records ``{category_id, score, segmentation}`` (+ ``image_id`` when given) of
    ``instances``, in their order (descending score)."""
    rles = instances.rles if instances.rles is not None else (encode_rle(m) for m in instances.masks)
    out = []
    for rle, lab, sc in zip(rles, np.asarray(instances.labels).tolist(), np.asarray(instances.scores).tolist()):
        rec: dict[str, Any] = {"category_id": int(categories[int(lab)].id), "score": float(sc), "segmentation": dict(rle)}
        if image_id is not None:
            rec = {"image_id": image_id, **rec}
        out.append(rec)
    return out
