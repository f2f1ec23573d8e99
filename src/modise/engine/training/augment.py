"""Training augmentation: large-scale jitter (LSJ) plus intensity jitter for mammograms.

LSJ (as in ODISE / Mask2Former): random horizontal flip, resize so the image fits a
``size`` square times a random scale in [min_scale, max_scale], then a fixed ``size``
crop (padding with zeros where the scaled image is smaller). Mammograms are grey and
acquisition-dependent, so the intensity jitter varies gamma, contrast and brightness
rather than colour.

Samples follow the dataset contract: ``image`` FloatTensor[1, H, W] in [0, 1],
``masks`` BoolTensor[n, H, W], ``labels`` / ``segment_ids`` LongTensor[n].
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


def _resize(sample: dict[str, Any], h: int, w: int) -> dict[str, Any]:
    img = F.interpolate(sample["image"][None], size=(h, w), mode="bilinear", align_corners=False)[0]
    masks = sample["masks"]
    if masks.numel():
        masks = F.interpolate(masks[None].float(), size=(h, w), mode="nearest")[0] > 0.5
    else:
        masks = masks.new_zeros((0, h, w))
    return {**sample, "image": img.clamp(0, 1), "masks": masks}


def _drop_empty(sample: dict[str, Any]) -> dict[str, Any]:
    masks = sample["masks"]
    keep = masks.flatten(1).any(1) if masks.numel() else torch.zeros(0, dtype=torch.bool)
    out = {**sample, "masks": masks[keep], "labels": sample["labels"][keep]}
    if "segment_ids" in sample:
        out["segment_ids"] = sample["segment_ids"][keep]
    return out


@dataclass
class LSJ:
    """Flip + scale jitter + fixed crop to ``size`` x ``size`` (``size`` a multiple of 32)."""

    size: int = 512
    min_scale: float = 0.1
    max_scale: float = 2.0
    flip_prob: float = 0.5

    def __call__(self, sample: dict[str, Any], rng: random.Random | None = None) -> dict[str, Any]:
        rng = rng or random
        if rng.random() < self.flip_prob:
            sample = {**sample, "image": sample["image"].flip(-1), "masks": sample["masks"].flip(-1)}
        _, h, w = sample["image"].shape
        scale = rng.uniform(self.min_scale, self.max_scale) * self.size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        sample = _resize(sample, nh, nw)
        # random crop (if larger) then pad bottom/right (if smaller) to a fixed square
        y0 = rng.randint(0, max(0, nh - self.size))
        x0 = rng.randint(0, max(0, nw - self.size))
        img = sample["image"][:, y0 : y0 + self.size, x0 : x0 + self.size]
        masks = sample["masks"][:, y0 : y0 + self.size, x0 : x0 + self.size]
        ph, pw = self.size - img.shape[1], self.size - img.shape[2]
        img = F.pad(img, (0, pw, 0, ph))
        masks = F.pad(masks, (0, pw, 0, ph))
        return _drop_empty({**sample, "image": img, "masks": masks})


@dataclass
class IntensityJitter:
    """Random gamma (log-uniform in [1/g, g]), contrast and brightness, clipped to [0, 1]."""

    gamma: float = 1.4
    contrast: float = 0.2
    brightness: float = 0.1
    prob: float = 0.8

    def __call__(self, sample: dict[str, Any], rng: random.Random | None = None) -> dict[str, Any]:
        rng = rng or random
        if rng.random() >= self.prob:
            return sample
        img = sample["image"].clamp(0, 1)
        g = math.exp(rng.uniform(-math.log(self.gamma), math.log(self.gamma)))
        img = img**g
        c = 1.0 + rng.uniform(-self.contrast, self.contrast)
        mean = img.mean()
        img = (img - mean) * c + mean + rng.uniform(-self.brightness, self.brightness)
        return {**sample, "image": img.clamp(0, 1)}


class Compose:
    """Apply transforms in order with one shared RNG (seedable for reproducible runs)."""

    def __init__(self, *transforms, seed: int | None = None) -> None:
        self.transforms = transforms
        self.rng = random.Random(seed)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        worker = torch.utils.data.get_worker_info()
        if worker is not None and getattr(self, "_worker_seed", None) != worker.seed:
            # each loader worker holds a copy of this RNG: reseed it from the worker's own seed
            self._worker_seed = worker.seed
            self.rng.seed(worker.seed)
        for t in self.transforms:
            sample = t(sample, self.rng)
        return sample


def build_train_transform(size: int, min_scale: float = 0.1, max_scale: float = 2.0, intensity: bool = True, seed: int | None = None) -> Compose:
    parts: list[Any] = [LSJ(size=size, min_scale=min_scale, max_scale=max_scale)]
    if intensity:
        parts.append(IntensityJitter())
    return Compose(*parts, seed=seed)
