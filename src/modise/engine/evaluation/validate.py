"""Validation of a model on a prepared dataset: run a pipeline over images of ``root`` and score
them with the evaluation engine (PQ/RQ/SQ sweep, AP on the model's instances, Dice). Used by
training's validation, the demo and the app."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.panoptic import Category

from .evaluator import PanopticEvaluator


def evaluate_dataset(pipeline: Any, root: str | Path, image_ids: Sequence[int], batch_size: int = 1, progress: bool = False) -> dict[str, Any]:
    """Metrics (metrics.json's keys) of ``pipeline`` on ``image_ids`` of dataset ``root``.

    ``pipeline``: a :class:`~modise.pipeline.ModisePipeline` (called with grey [H, W] arrays, returns
    :class:`~modise.pipeline.PanopticResult` s; has ``categories``)."""
    from modise.data.dataset import PanopticDataset
    from modise.progress import track

    ds = PanopticDataset(root, image_ids=list(image_ids))
    cats = pipeline.categories
    evaluator = PanopticEvaluator(cats)
    for start in track(range(0, len(ds), batch_size), "validating", enabled=progress, unit="batch"):
        samples = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
        results = pipeline([s["image"][0].numpy() for s in samples])
        for s, r in zip(samples, results):
            gt_ids, gt_segments = gt_from_sample(s, cats)
            # AP on the top-100 instances, as detectron2 evaluates Mask2Former (maskformer_model.py:344-380)
            evaluator.add(int(s["image_id"]), gt_ids, gt_segments, r.ids, r.segments_info, instances=r.instance_records(cats))
    return evaluator.compute()


ENSEMBLE_KEYS = {True: "with_clip_ensemble", False: "without_clip_ensemble"}


def evaluate_held_out(pipeline: Any, root: str | Path, image_ids: Sequence[int], progress: bool = False,
                      both_ensembles: bool = True) -> dict[str, Any]:
    """:func:`evaluate_dataset` at the model's own ``inference.clip_ensemble`` (recorded as ``clip_ensemble``)
    and, when the model carries the CLIP ensemble and ``both_ensembles``, once more with it switched: those
    metrics go under ``with_clip_ensemble`` / ``without_clip_ensemble``. The ensemble is inference-only, so
    one trained model gives both rows of Table 1 (the demo, which shows one row, evaluates once)."""
    on = bool(pipeline.config.inference.clip_ensemble)
    metrics = evaluate_dataset(pipeline, root, image_ids, progress=progress)
    metrics["clip_ensemble"] = on
    if both_ensembles and "clip_ensemble" in pipeline.model.extras:
        pipeline.set_inference(clip_ensemble=not on)
        try:
            metrics[ENSEMBLE_KEYS[not on]] = evaluate_dataset(pipeline, root, image_ids, progress=progress)
        finally:
            pipeline.set_inference(clip_ensemble=on)
    return metrics


def with_clip_ensemble(metrics: dict[str, Any], on: bool | None) -> dict[str, Any]:
    """A run's metrics with the CLIP ensemble ``on`` / off (``None``: as the run's model is set); a model
    that cannot run it has one set of numbers, the same either way."""
    if on is None or bool(metrics.get("clip_ensemble", False)) == on:
        return metrics
    return metrics.get(ENSEMBLE_KEYS[on], metrics)


def gt_from_sample(sample: dict[str, Any], categories: Sequence[Category]) -> tuple[np.ndarray, list[dict]]:
    """Dataset sample -> (segment id map [H, W], [{id, category_id}])."""
    masks = sample["masks"].numpy().astype(bool)
    ids = np.zeros(masks.shape[1:], dtype=np.int64)
    segments = []
    for m, label, sid in zip(masks, sample["labels"].tolist(), sample["segment_ids"].tolist()):
        ids[m] = int(sid)
        segments.append({"id": int(sid), "category_id": int(categories[int(label)].id)})
    return ids, segments
