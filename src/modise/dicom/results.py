"""A source image's SEG and SR, built together (the SR references the SEG's segments) and written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.panoptic import Category

from .findings import image_findings
from .seg import build_seg, write_dicom
from .sr import build_sr


def build_results(source: Any, ids: np.ndarray, segments_info: Sequence[dict[str, Any]],
                  categories: Sequence[Category], fingerprint: str, *, sr: bool = True) -> tuple[Any, Any | None]:
    """(SEG, SR or None) of one predicted image. ids: [H, W] panoptic id map at the source's size;
    ``segments_info``: its ``{id, category_id, score}`` records; ``fingerprint``:
    :func:`~modise.dicom.uids.model_fingerprint` of the model and settings that predicted it."""
    findings = image_findings(ids, segments_info, categories, fingerprint, source.SOPInstanceUID)
    seg = build_seg(source, ids, findings, categories, fingerprint)
    return seg, (build_sr(source, seg, findings, fingerprint) if sr else None)


def write_results(seg_path: str | Path, sr_path: str | Path | None, source: Any, ids: np.ndarray,
                  segments_info: Sequence[dict[str, Any]], categories: Sequence[Category], fingerprint: str) -> list[Path]:
    """Build and write (atomically) the SEG to ``seg_path`` and, unless ``sr_path`` is None, the SR."""
    seg, sr = build_results(source, ids, segments_info, categories, fingerprint, sr=sr_path is not None)
    written = [write_dicom(seg_path, seg)]
    if sr is not None:
        written.append(write_dicom(sr_path, sr))
    return written
