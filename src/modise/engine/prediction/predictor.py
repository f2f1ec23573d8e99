"""Run a trained M-ODISE on images of any size and turn results into panoptic records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from modise.data.panoptic import Category
from modise.errors import ModiseError


class Predictor:
    """Inference at the training scale: the longest side is resized to ``image_size``,
    padded to a multiple of 32, predicted, and results returned at the original size
    (the model crops the padding and resizes back; larger inputs slide 512 windows)."""

    def __init__(
        self,
        model: torch.nn.Module,
        categories: Sequence[Category],
        image_size: int,
        object_mask_threshold: float | None = None,  # None: the model config's inference thresholds
        overlap_threshold: float | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.model = model.eval().to(device)
        self.categories = list(categories)
        self.image_size = image_size
        self.object_mask_threshold, self.overlap_threshold = object_mask_threshold, overlap_threshold
        self.device = torch.device(device)

    @classmethod
    def from_run(cls, run: str | Path, device: str | None = None, **thresholds: float) -> "Predictor":
        """Load ``RUN/model`` (or a model folder itself) with the run's inference settings."""
        from modise.engine.training.train import MODEL_DIR, load_run_config
        from modise.model import MODISE

        run = Path(run)
        if not run.exists():
            raise ModiseError(f"Checkpoint '{run}' does not exist.")
        model_dir = run / MODEL_DIR if (run / MODEL_DIR).is_dir() else run
        run_dir = run if (run / MODEL_DIR).is_dir() else run.parent
        try:
            cfg = load_run_config(run_dir)
        except ModiseError:
            cfg = {}
        if not model_dir.is_dir() or not any(model_dir.iterdir()):
            raise ModiseError(f"'{run}' holds no trained model (expected {model_dir}); did training finish?")
        model = MODISE.from_pretrained(model_dir)
        categories = list(getattr(model, "categories", None) or [Category.from_json(c) for c in cfg.get("categories", [])])
        if not categories:
            raise ModiseError(f"'{run}': the model's categories are unknown.")
        training = cfg.get("training", {})
        size = int(training.get("image_size") or 512)
        kw = {k: float(training[k]) for k in ("object_mask_threshold", "overlap_threshold") if training.get(k) is not None}
        kw.update({k: v for k, v in thresholds.items() if v is not None})
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model, categories, size, device=dev, **kw)

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """images: grey float [H, W] arrays in [0, 1] (any sizes) -> the model's inference results."""
        batch, sizes, outs = [], [], []
        for px in images:
            h0, w0 = px.shape
            scale = self.image_size / max(h0, w0)
            h, w = max(1, round(h0 * scale)), max(1, round(w0 * scale))
            t = torch.from_numpy(np.ascontiguousarray(px, dtype=np.float32))[None, None]
            t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=scale < 1)
            batch.append(t[0].clamp(0, 1))
            sizes.append((h, w))
            outs.append((h0, w0))
        side = max(max(s) for s in sizes)
        side = -(-side // 32) * 32
        x = torch.stack([F.pad(t, (0, side - t.shape[2], 0, side - t.shape[1])) for t in batch])
        x = x.expand(-1, 3, -1, -1).to(self.device)
        return self.model.inference(
            x, image_sizes=sizes, output_sizes=outs,
            object_mask_threshold=self.object_mask_threshold, overlap_threshold=self.overlap_threshold,
        )

    def evaluate_dataset(self, root: str | Path, image_ids: Sequence[int], batch_size: int = 1, progress: bool = False) -> dict[str, Any]:
        """PQ/RQ/SQ sweep, AP and Dice (the evaluation engine) of this model on ``image_ids`` of ``root``."""
        from modise.data.dataset import PanopticDataset
        from modise.engine.evaluation import PanopticEvaluator
        from modise.engine.evaluation.instances import instance_records

        ds = PanopticDataset(root, image_ids=list(image_ids))
        evaluator = PanopticEvaluator(self.categories)
        idx = list(range(len(ds)))
        for start in _track(range(0, len(idx), batch_size), progress, "validating", total=-(-len(idx) // batch_size)):
            samples = [ds[i] for i in idx[start : start + batch_size]]
            results = self([s["image"][0].numpy() for s in samples])
            for s, r in zip(samples, results):
                gt_ids, gt_segments = gt_from_sample(s, self.categories)
                pred_ids, pred_segments = panoptic_record(r)
                # AP on the top-100 instances, as detectron2 evaluates Mask2Former (maskformer_model.py:344-380)
                evaluator.add(int(s["image_id"]), gt_ids, gt_segments, pred_ids, pred_segments, instances=instance_records(r, self.categories))
        return evaluator.compute()


def gt_from_sample(sample: dict[str, Any], categories: Sequence[Category]) -> tuple[np.ndarray, list[dict]]:
    """Dataset sample -> (segment id map [H, W], [{id, category_id}])."""
    masks = sample["masks"].numpy().astype(bool)
    ids = np.zeros(masks.shape[1:], dtype=np.int64)
    segments = []
    for m, label, sid in zip(masks, sample["labels"].tolist(), sample["segment_ids"].tolist()):
        ids[m] = int(sid)
        segments.append({"id": int(sid), "category_id": int(categories[int(label)].id)})
    return ids, segments


def panoptic_record(result: dict[str, Any]) -> tuple[np.ndarray, list[dict]]:
    """Model result -> (segment id map [H, W] int64, [{id, category_id, score, area, isthing}])."""
    ids, segments = result["panoptic_seg"]
    ids = ids.cpu().numpy().astype(np.int64) if torch.is_tensor(ids) else np.asarray(ids, dtype=np.int64)
    out = []
    for s in segments:
        area = int((ids == int(s["id"])).sum())
        if area == 0:
            continue
        out.append({
            "id": int(s["id"]), "category_id": int(s["category_id"]), "score": float(s.get("score", 1.0)),
            "area": area, "isthing": int(s.get("isthing", 1)),
        })
    return ids, out


def _track(it, enabled: bool, description: str, total: int | None = None):
    if not enabled:
        return it
    from rich.progress import track

    return track(it, description=description, total=total, console=_stderr_console(), transient=True)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)
