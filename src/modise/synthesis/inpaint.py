"""Lesion inpainting at native resolution: crop around the lesion, inpaint, paste back.

The inpainting model sees a ``crop``x``crop`` window (512 for MAM-E) cut from the full
image at its own resolution, centred on the mask; only the masked pixels of its output
are written back, so every pixel outside the mask stays exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from modise.errors import ModiseError
from modise.synthesis.boxes import CDD_CESM_BOX_STATS, Box, LesionBoxStats, box_mask, sample_box
from modise.synthesis.breast_mask import as_grey_float, breast_mask
from modise.synthesis.prompts import INPAINT_PROMPT


def to_uint8(image: Any) -> np.ndarray:
    """PIL / array image -> (H, W) uint8 grey."""
    arr = np.asarray(image)
    if arr.dtype == np.uint8 and arr.ndim == 2:
        return arr
    return np.clip(np.rint(as_grey_float(image) * 255.0), 0, 255).astype(np.uint8)


def crop_window(mask: np.ndarray, crop: int) -> Box:
    """A ``crop``-sided window centred on the mask's bounding box, shifted to stay in the image.

    The window may extend past an image smaller than ``crop``; callers pad.
    """
    ys, xs = np.nonzero(mask)
    x0m, x1m, y0m, y1m = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    if x1m - x0m > crop or y1m - y0m > crop:
        raise ModiseError(f"The lesion mask ({x1m - x0m}x{y1m - y0m} px) is larger than the {crop}x{crop} inpainting window.")
    H, W = mask.shape

    def start(lo: int, hi: int, size: int) -> int:
        s = (lo + hi) // 2 - crop // 2
        return max(0, min(s, size - crop)) if size >= crop else 0

    x0, y0 = start(x0m, x1m, W), start(y0m, y1m, H)
    return (x0, y0, x0 + crop, y0 + crop)


def auto_box(image: Any, seed: int = 0, stats: LesionBoxStats = CDD_CESM_BOX_STATS, max_side: int | None = None) -> Box:
    """A lesion box inside the breast of ``image``, drawn from ``stats`` with ``seed``."""
    return sample_box(breast_mask(image), np.random.default_rng(seed), stats, max_side=max_side)


def inpaint_lesion(
    pipe: Any,
    image: Any,
    mask: np.ndarray | None = None,
    auto_box: bool = False,
    seed: int = 0,
    steps: int = 24,
    guidance: float = 3.5,
    prompt: str = INPAINT_PROMPT,
    crop: int | None = None,
    stats: LesionBoxStats = CDD_CESM_BOX_STATS,
    callback: Callable[..., Any] | None = None,
) -> tuple[Any, np.ndarray]:
    """Inpaint a lesion into a grey mammogram.

    Args:
        image: (H, W) array or PIL image, any size (native resolution is kept).
        mask: (H, W) bool region to inpaint; or None with ``auto_box=True`` to draw a box
            inside the breast from ``stats``.
        crop: inpainting window side; defaults to the model's native resolution (512).
    Returns:
        (result as PIL "L" image of the input's size, (H, W) bool mask of changed region).
    """
    import torch
    from PIL import Image

    from modise.synthesis.pipelines import native_resolution

    grey = to_uint8(image)
    H, W = grey.shape
    crop = crop or native_resolution(pipe)
    if crop % int(pipe.vae_scale_factor):
        raise ModiseError(f"The inpainting window {crop} must be a multiple of {pipe.vae_scale_factor}.")
    if mask is None:
        if not auto_box:
            raise ModiseError("Give a lesion mask or ask for an automatic box (--mask or --auto-box).")
        box = sample_box(breast_mask(grey), np.random.default_rng(seed), stats, max_side=crop - 2)
        mask = box_mask((H, W), box)
    mask = np.asarray(mask, bool)
    if mask.shape != (H, W):
        raise ModiseError(f"The mask is {mask.shape[1]}x{mask.shape[0]} px but the image is {W}x{H} px.")
    if not mask.any():
        raise ModiseError("The lesion mask is empty.")
    x0, y0, x1, y1 = crop_window(mask, crop)
    # Images smaller than the window are zero-padded (black, like the background).
    win = np.zeros((crop, crop), np.uint8)
    win_mask = np.zeros((crop, crop), bool)
    h, w = min(crop, H - y0), min(crop, W - x0)
    win[:h, :w] = grey[y0 : y0 + h, x0 : x0 + w]
    win_mask[:h, :w] = mask[y0 : y0 + h, x0 : x0 + w]
    out = pipe(
        prompt,
        image=Image.fromarray(win).convert("RGB"),
        mask_image=Image.fromarray(win_mask.astype(np.uint8) * 255),
        height=crop,
        width=crop,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(seed),
        callback_on_step_end=callback,
    ).images[0]
    painted = np.asarray(out.convert("L"))
    result = grey.copy()
    region = result[y0 : y0 + h, x0 : x0 + w]
    region[win_mask[:h, :w]] = painted[:h, :w][win_mask[:h, :w]]
    return Image.fromarray(result), mask
