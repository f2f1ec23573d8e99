"""``ModisePipeline``: a trained M-ODISE and everything needed to run it on images of any size.

Like a diffusers pipeline, it is a model config (with its inference settings: the test image size,
the window settings of the backbone, the thresholds) plus components (the :class:`~modise.model.MODISE`
model and its categories), loaded and saved as one folder::

    pipe = ModisePipeline.from_pretrained("runs/m-odise")          # a run or its model/ folder
    results = pipe([pixels], object_mask_threshold=0.5)            # grey [H, W] arrays in [0, 1]; per-call settings
    results[0].write(PanopticFolderWriter(out, pipe.categories), {"id": 1, "file_name": "a.png", ...})

``__call__`` runs, per image: 1. resize the shortest edge to the inference size (ODISE's test
ResizeShortestEdge), 2. pad to a multiple of the model's size_divisibility, 3. features + mask decoding (the model's forward),
4. masks cropped of padding and resized to the original size, 5. semantic / panoptic / instance
inference there (Mask2Former's order, :mod:`modise.model.inference`). ``modise predict``, training
validation, ``serve`` and the demo all go through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from modise.data.coco_records import Instances, instance_records
from modise.data.panoptic import Category, PanopticFolderWriter, panoptic_record
from modise.errors import ModiseError
from modise.model.config import InferenceConfig


@dataclass
class PanopticResult:
    """One image's prediction at its original size (CPU arrays).

    ``ids`` [H, W] int64 segment ids (0 = background); ``segments_info`` [{id, category_id, score, area,
    isthing}]; ``instances``: Mask2Former's top-k (:class:`~modise.data.coco_records.Instances`, what AP
    is computed on); ``sem_seg`` [K, H, W] per-class probability; ``settings``: the inference settings
    that produced it. A compact result (``compact=True`` in the call, what ``modise predict`` writes) has
    ``sem_seg`` and the instance ``masks`` at the inference resolution and the full-size instance masks
    as COCO RLE in ``instances.rles``.
    """

    ids: np.ndarray
    segments_info: list[dict[str, Any]]
    instances: Instances
    sem_seg: np.ndarray
    settings: InferenceConfig

    @classmethod
    def from_model_result(cls, result: dict[str, Any], settings: InferenceConfig) -> "PanopticResult":
        """The model's result dict (tensors) -> a result on the CPU, empty segments dropped."""
        ids, segments = panoptic_record(result)
        inst = result["instances"]
        instances = Instances(*(inst[k].detach().cpu().numpy() for k in ("labels", "scores", "masks")), rles=inst.get("rles"))
        return cls(ids, segments, instances, result["sem_seg"].detach().float().cpu().numpy(), settings)

    def instance_records(self, categories: Sequence[Category]) -> list[dict[str, Any]]:
        """COCO result records (``category_id``, ``score``, RLE ``segmentation``) of the instances."""
        return instance_records(self.instances, categories)

    def write(self, writer: PanopticFolderWriter, image: dict[str, Any], *, png_name: str | None = None,
              instances: bool = True) -> dict[str, Any]:
        """Write the id PNG (and the instances) through ``writer``; ``image``: the ``images`` record
        (``id``, ``file_name``, ...; ``height``/``width`` are set here). Returns the annotation."""
        h, w = self.ids.shape
        recs = self.instance_records(writer.categories) if instances else None
        return writer.add({**image, "height": h, "width": w}, self.ids, self.segments_info, png_name=png_name, instances=recs)


def resized_shape(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge.get_output_shape (ODISE's test resize): the shortest edge to
    ``short`` unless the longest would pass ``max_size``; rounded half up."""
    scale = short / min(h, w)
    if max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


class ModisePipeline:
    """A MODISE model + its categories + its inference settings (``model.config.inference``).

    ``model.config.input_size`` is the size the model was trained at and, unless
    ``inference.image_size`` is set, the shortest edge it predicts at."""

    def __init__(self, model: torch.nn.Module, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)

    # ------------------------------------------------------------------ components and settings
    @property
    def config(self):
        """The model's :class:`~modise.model.config.ModelConfig` (with ``inference``)."""
        return self.model.config

    @property
    def categories(self) -> list[Category]:
        return list(self.model.categories)

    def settings(self, **overrides: Any) -> InferenceConfig:
        """The settings one call runs with: ``config.inference`` with ``overrides`` (``None`` keeps)
        replaced and its sizes resolved (:meth:`~modise.model.config.ModelConfig.inference_settings`)."""
        return self.config.inference_settings(**overrides)

    # ------------------------------------------------------------------ save / load
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None, **overrides: Any) -> "ModisePipeline":
        """Load a training run (``RUN/model``) or a model folder written by :meth:`save_pretrained`;
        ``overrides``: ``InferenceConfig`` fields (``image_size``, thresholds, ...) to change; ``None`` keeps."""
        from modise.model import MODISE
        from modise.runs import model_dir

        path = Path(path)
        if not path.exists():
            raise ModiseError(f"Checkpoint '{path}' does not exist.")
        folder = model_dir(path)
        if not folder.is_dir() or not any(folder.iterdir()):
            raise ModiseError(f"'{path}' holds no trained model (expected {folder}); did training finish?")
        model = MODISE.from_pretrained(folder)
        if not model.categories:
            raise ModiseError(f"'{path}': the model's categories are unknown.")
        pipe = cls(model, device=device)
        pipe.set_inference(**overrides)
        return pipe

    def set_inference(self, **overrides: Any) -> None:
        """Change ``model.config.inference`` (what :meth:`save_pretrained` writes); ``None`` values keep."""
        inference = self.config.inference.replace(**overrides)
        if inference is not self.config.inference:
            self.model.config = self.config.model_copy(update={"inference": inference})

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the model folder (config.yaml with the inference settings, categories.json, weights)."""
        return self.model.save_pretrained(directory)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray], *, compact: bool = False, **overrides: Any) -> list[PanopticResult]:
        """images: grey float [H, W] arrays in [0, 1] (any sizes) -> one :class:`PanopticResult` each,
        at its original size. ``overrides``: :class:`~modise.model.config.InferenceConfig` fields for this
        call only; ``compact``: heatmaps and drawn instance masks at the inference resolution, full-size
        instances as RLE (see :class:`PanopticResult`)."""
        s = self.settings(**overrides)
        # 1. resize: shortest edge to image_size, longest at most max_size (ODISE coco_panoptic_semseg.py:66)
        resized = [_resize(px, s.image_size, s.max_size) for px in images]
        # 2. padded (by the model) to a multiple of its size_divisibility (Mask2Former 32, ODISE 64); images are
        #    batched only with images of the same padded size, so a result never depends on the rest of its batch
        groups: dict[tuple[int, int], list[int]] = {}
        for i, t in enumerate(resized):
            groups.setdefault(self.model.padded_size(t.shape[-2:]), []).append(i)
        results: list[PanopticResult | None] = [None] * len(resized)
        for idx in groups.values():
            x = torch.cat([self.model.pad(resized[i][None]) for i in idx]).expand(-1, 3, -1, -1).to(self.device)
            # 3.-5. features + mask decoding (the model's forward); masks cropped of padding and resized to the
            #       original size, then semantic / panoptic / instance inference (modise.model.inference)
            outs = self.model.inference(x, image_sizes=[tuple(resized[i].shape[-2:]) for i in idx],
                                        output_sizes=[tuple(images[i].shape[:2]) for i in idx], settings=s, compact=compact)
            for i, out in zip(idx, outs):
                results[i] = PanopticResult.from_model_result(out, s)
        return results  # type: ignore[return-value]


def _resize(px: np.ndarray, short: int, max_size: int) -> torch.Tensor:
    """Grey [H, W] in [0, 1] -> [1, h, w] float tensor resized bilinearly (antialiased when shrinking)."""
    if px.ndim != 2:
        raise ModiseError(f"Expected a grey [H, W] image, got an array of shape {tuple(px.shape)}.")
    h0, w0 = px.shape
    h, w = resized_shape(h0, w0, short, max_size)
    t = torch.from_numpy(np.ascontiguousarray(px, dtype=np.float32))[None, None]
    if (h, w) != (h0, w0):
        t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=h < h0).clamp(0, 1)
    return t[0]
