"""Run a trained M-ODISE on images of any size (results become panoptic records through
:func:`modise.data.panoptic.panoptic_record`)."""

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
        from modise.engine.run_layout import MODEL_DIR, load_run_config
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
