"""Training augmentation: detectron2's large-scale jitter (LSJ), plus an optional intensity jitter.

LSJ as ODISE trains it (``configs/common/data/coco_panoptic_semseg.py:47-56``: ``RandomFlip``,
``ResizeScale(0.1, 2.0, 1024, 1024)``, ``FixedSizeCrop(1024)``), with detectron2's arithmetic
(``detectron2/data/transforms/augmentation_impl.py``): the image is scaled to fit ``size`` times a
random scale, downscaled with PIL's antialiased bilinear filter (``transform.py:117-123``), the
masks with nearest neighbour (``transform.py:154-156``); then one random crop, or padding on the
right and bottom with grey 128 (masks: no segment). Instances the crop empties stay as empty
targets, as the ODISE / Mask2Former panoptic mapper keeps every non-crowd segment
(ODISE ``odise/data/dataset_mapper.py:122-142``).

The intensity jitter (gamma, contrast, brightness) is in neither original; it is off unless a
run asks for it (``--intensity-jitter``).

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

# FixedSizeCrop(pad_value=128.0) on 0-255 images (augmentation_impl.py:319); the masks' pad value 255
# becomes panoptic id 0xFFFFFF after rgb2id, a segment no annotation has (no instance there)
PAD_VALUE = 128.0 / 255.0


def resize_sample(sample: dict[str, Any], h: int, w: int) -> dict[str, Any]:
    """detectron2's ``ResizeTransform``: PIL bilinear for the image (antialiased when shrinking;
    torch's antialias follows PIL's filter), PIL nearest (= torch ``nearest-exact``) for the masks."""
    img = F.interpolate(sample["image"][None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
    masks = sample["masks"]
    if masks.numel():
        masks = F.interpolate(masks[None].float(), size=(h, w), mode="nearest-exact")[0] > 0.5
    else:
        masks = masks.new_zeros((0, h, w))
    return {**sample, "image": img.clamp(0, 1), "masks": masks}


@dataclass
class LSJ:
    """Flip + scale jitter + fixed crop to ``size`` x ``size`` (``size`` a multiple of 32)."""

    size: int = 512
    min_scale: float = 0.1
    max_scale: float = 2.0
    flip_prob: float = 0.5
    pad_value: float = PAD_VALUE

    def __call__(self, sample: dict[str, Any], rng: random.Random | None = None) -> dict[str, Any]:
        rng = rng or random
        if rng.random() < self.flip_prob:
            sample = {**sample, "image": sample["image"].flip(-1), "masks": sample["masks"].flip(-1)}
        _, h, w = sample["image"].shape
        # ResizeScale._get_resize (augmentation_impl.py:231-246): fit the scaled target, round the size
        scale = rng.uniform(self.min_scale, self.max_scale) * self.size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        sample = resize_sample(sample, nh, nw)
        # FixedSizeCrop._get_crop (augmentation_impl.py:338-341): ONE uniform draw places the crop on both axes
        u = rng.uniform(0.0, 1.0)
        y0, x0 = round(max(0, nh - self.size) * u), round(max(0, nw - self.size) * u)
        img = sample["image"][:, y0 : y0 + self.size, x0 : x0 + self.size]
        masks = sample["masks"][:, y0 : y0 + self.size, x0 : x0 + self.size]
        # FixedSizeCrop._get_pad (augmentation_impl.py:346-364): pad right and bottom
        ph, pw = self.size - img.shape[1], self.size - img.shape[2]
        img = F.pad(img, (0, pw, 0, ph), value=self.pad_value)
        masks = F.pad(masks, (0, pw, 0, ph))
        return {**sample, "image": img, "masks": masks}


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


def build_train_transform(size: int, min_scale: float = 0.1, max_scale: float = 2.0, intensity: bool = False, seed: int | None = None) -> Compose:
    parts: list[Any] = [LSJ(size=size, min_scale=min_scale, max_scale=max_scale)]
    if intensity:
        parts.append(IntensityJitter())
    return Compose(*parts, seed=seed)
