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

Samples follow the dataset contract: ``image`` FloatTensor[1, H, W] in [0, 1], ``ids`` the panoptic id
map [H, W] (integer), ``labels`` / ``segment_ids`` LongTensor[n]; LSJ adds ``masks`` BoolTensor[n, S, S].
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from modise.data.dataset import masks_from_ids

# FixedSizeCrop(pad_value=128.0) on 0-255 images (augmentation_impl.py:319); the masks' pad value 255
# becomes panoptic id 0xFFFFFF after rgb2id, a segment no annotation has (no instance there)
PAD_VALUE = 128.0 / 255.0


def nearest_source_index(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out,) LongTensor: the source row (or column) of each output one under PIL's NEAREST, which is
    torch's ``nearest-exact``: ``min(floor((i + 0.5) * scale), n_in - 1)`` with ``scale = n_in / n_out``
    in float32, as torch's kernel computes it (``UpSample.h``: ``nearest_neighbor_exact_compute_source_index``)."""
    scale = torch.tensor(n_in, dtype=torch.float32) / n_out
    return ((torch.arange(n_out, dtype=torch.float32) + 0.5) * scale).floor().long().clamp_(max=n_in - 1)


def resize_image(image: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """detectron2's ``ResizeTransform`` of the image: PIL bilinear, antialiased when shrinking (torch's
    antialias follows PIL's filter); [1, H, W] -> [1, h, w] in [0, 1]."""
    return F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)


@dataclass
class LSJ:
    """Flip + scale jitter + fixed crop to ``size`` x ``size`` (``size`` a multiple of 32).

    Works on the panoptic id map as detectron2 does (the mapper transforms ``pan_seg_gt`` and builds the
    masks from it afterwards, ODISE ``odise/data/dataset_mapper.py:113-129``): the id map is
    gathered once at the crop's size, so no per-segment full-size mask is ever made; the sample's
    ``masks`` come from the cropped map (:func:`masks_from_ids`)."""

    size: int = 512
    min_scale: float = 0.1
    max_scale: float = 2.0
    flip_prob: float = 0.5
    pad_value: float = PAD_VALUE

    def __call__(self, sample: dict[str, Any], rng: random.Random | None = None) -> dict[str, Any]:
        rng = rng or random
        img, ids = sample["image"], sample["ids"]
        _, h, w = img.shape
        flip = rng.random() < self.flip_prob
        if flip:
            img = img.flip(-1)
        # ResizeScale._get_resize (augmentation_impl.py:231-246): fit the scaled target, round the size
        scale = rng.uniform(self.min_scale, self.max_scale) * self.size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        img = resize_image(img, nh, nw)
        # FixedSizeCrop._get_crop (augmentation_impl.py:338-341): ONE uniform draw places the crop on both axes
        u = rng.uniform(0.0, 1.0)
        y0, x0 = round(max(0, nh - self.size) * u), round(max(0, nw - self.size) * u)
        img = img[:, y0 : y0 + self.size, x0 : x0 + self.size]
        rows = nearest_source_index(h, nh)[y0 : y0 + self.size]
        cols = nearest_source_index(w, nw)[x0 : x0 + self.size]
        if flip:  # the flipped map's column c is the source's w - 1 - c
            cols = (w - 1) - cols
        ids = ids.index_select(0, rows).index_select(1, cols)
        # FixedSizeCrop._get_pad (augmentation_impl.py:346-364): pad right and bottom (ids: 0, no segment)
        ph, pw = self.size - img.shape[1], self.size - img.shape[2]
        img = F.pad(img, (0, pw, 0, ph), value=self.pad_value)
        ids = F.pad(ids, (0, pw, 0, ph))
        return {**sample, "image": img, "ids": ids, "masks": masks_from_ids(ids, sample["segment_ids"])}


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
