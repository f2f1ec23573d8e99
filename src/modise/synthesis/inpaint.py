"""Lesion inpainting, two ways, both pasted back at full resolution with a blended edge.

``whole`` (default, MAM-E's way, ``generation/inpainting/siemens_inpainting.py:124-188``):
the whole mammogram becomes the model's 512x512 frame (mirrored to face left, short side
to 512, centre crop, as the training images), a box is drawn inside the breast from
MAM-E's statistics (area 25th-75th percentile of the training masks, height/width ratio
mean +- std), 40 steps at guidance 4. The frame result is resampled onto the original
pixels inside the mask only.

``crop`` (option): a ``crop`` x ``crop`` window cut at native resolution, centred on the mask.
It keeps the image's own detail (a 3000x4000 mammogram is 6 px per frame pixel in
``whole``), at the price of a lesion the model sees out of its breast-wide context.

In both, only mask pixels change; a feather inside the mask edge (weight rising from the
edge inward) hides the seam, so pixels outside the mask are exactly as they were.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from modise.errors import ModiseError
from modise.synthesis.boxes import (
    CDD_CESM_BOX_STATS,
    CDD_CESM_MAME_BOX_STATS,
    Box,
    LesionBoxStats,
    MameBoxStats,
    box_mask,
    sample_box,
    sample_mame_box,
)
from modise.synthesis.breast_mask import as_grey_float, breast_mask, inner_breast
from modise.synthesis.prompts import INPAINT_PROMPT

BOX_MARGIN = 0.03  # of the frame side: an automatic box keeps this far inside the breast (15 px of 512)


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


MODES = ("whole", "crop")


def feather_weights(mask: np.ndarray, feather: float) -> np.ndarray:
    """(H, W) float weights: 0 outside ``mask``, rising from the edge inward over ``feather`` px to 1.

    The feather is shortened for thin masks so every mask keeps full weight at its core.
    """
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(mask, bool)
    if feather <= 0:
        return mask.astype(np.float64)
    dist = distance_transform_edt(mask)  # 1 at the edge pixels inside, 0 outside
    f = min(float(feather), max(float(dist.max()) / 3.0, 1.0))
    return np.clip(dist / (f + 1.0), 0.0, 1.0) * mask


def blend(original: np.ndarray, painted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """uint8 ``original`` * (1 - w) + ``painted`` * w (same shapes)."""
    out = original.astype(np.float64) * (1.0 - weights) + np.asarray(painted, np.float64) * weights
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _run(pipe: Any, prompt: str, win: np.ndarray, win_mask: np.ndarray, steps: int, guidance: float, seed: int,
         callback: Callable[..., Any] | None) -> np.ndarray:
    """One inpainting call on a square uint8 window; the painted window as (S, S) uint8."""
    import torch
    from PIL import Image

    side = win.shape[0]
    out = pipe(
        prompt,
        image=Image.fromarray(win).convert("RGB"),
        mask_image=Image.fromarray(win_mask.astype(np.uint8) * 255),
        height=side,
        width=side,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(seed),
        callback_on_step_end=callback,
    ).images[0]
    return np.asarray(out.convert("L"))


def inpaint_lesion(
    pipe: Any,
    image: Any,
    mask: np.ndarray | None = None,
    auto_box: bool = False,
    seed: int = 0,
    steps: int = 40,
    guidance: float = 4.0,
    prompt: str = INPAINT_PROMPT,
    crop: int | None = None,
    stats: LesionBoxStats | MameBoxStats | None = None,
    callback: Callable[..., Any] | None = None,
    mode: str | None = None,
    laterality: str | None = None,
    feather: float | None = None,
) -> tuple[Any, np.ndarray]:
    """Inpaint a lesion into a grey mammogram.

    Args:
        image: (H, W) array or PIL image, any size (the result keeps it).
        mask: (H, W) bool region to inpaint; or None with ``auto_box=True`` to draw a box
            inside the breast (``whole``: MAM-E's statistics, ``crop``: log-normal ones).
        mode: "whole" (MAM-E, the default) or "crop" (native-resolution window, the default
            when ``crop`` is given); see the module docstring for when to prefer which.
        crop: window side of ``crop`` mode; defaults to the model's native resolution (512).
        stats: box statistics (:class:`MameBoxStats` for whole, :class:`LesionBoxStats` for crop).
        laterality: "L" / "R" for ``whole`` (right breasts are mirrored into the frame as in
            training); None guesses it from the image.
        feather: blend width in px inside the mask edge [whole: 2 frame px; crop: 3 px].
    Returns:
        (result as PIL "L" image of the input's size, (H, W) bool mask of the lesion region).
    """
    from PIL import Image

    mode = mode or ("crop" if crop else "whole")
    if mode not in MODES:
        raise ModiseError(f"Inpainting mode must be one of {', '.join(MODES)}, not '{mode}'.")
    grey = to_uint8(image)
    H, W = grey.shape
    if mask is None and not auto_box:
        raise ModiseError("Give a lesion mask or ask for an automatic box (--mask or --auto-box).")
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != (H, W):
            raise ModiseError(f"The mask is {mask.shape[1]}x{mask.shape[0]} px but the image is {W}x{H} px.")
        if not mask.any():
            raise ModiseError("The lesion mask is empty.")
    run = dict(pipe=pipe, prompt=prompt, steps=steps, guidance=guidance, seed=seed, callback=callback)
    if mode == "whole":
        result, mask = _inpaint_whole(grey, mask, stats or CDD_CESM_MAME_BOX_STATS, laterality, feather, run)
    else:
        result, mask = _inpaint_crop(grey, mask, stats or CDD_CESM_BOX_STATS, crop, feather, run)
    return Image.fromarray(result), mask


def _inpaint_whole(grey: np.ndarray, mask: np.ndarray | None, stats: Any, laterality: str | None,
                   feather: float | None, run: dict) -> tuple[np.ndarray, np.ndarray]:
    """MAM-E's way: the whole image as the model's frame, the result resampled into the mask."""
    from modise.synthesis.frame import Frame
    from modise.synthesis.mame_image import faces_right
    from modise.synthesis.pipelines import native_resolution

    if not isinstance(stats, MameBoxStats):
        raise ModiseError("The whole-image mode needs MAM-E box statistics (MameBoxStats).")
    H, W = grey.shape
    side = native_resolution(run["pipe"])
    lat = (laterality or "").strip().upper()[:1]
    frame = Frame(H, W, side, flip=lat == "R" if lat in ("L", "R") else faces_right(grey))
    win = frame.to_frame(grey)
    if mask is None:
        # MAM-E's draw, inside the breast less a margin: its boxes may otherwise touch the skin line or the image edge
        inner = inner_breast(breast_mask(win), BOX_MARGIN)
        box = sample_mame_box(inner, np.random.default_rng(run["seed"]), stats.scaled(side))
        win_mask = box_mask((side, side), box)
        rows, cols = frame.region_of(win_mask, margin=1)
        mask = np.zeros((H, W), bool)
        mask[rows, cols] = frame.sample(win_mask.astype(np.float64), rows, cols, nearest=True) > 0.5
    else:
        win_mask = frame.to_frame(mask.astype(np.uint8) * 255, nearest=True) > 127
        if win_mask.sum() < mask.sum() / max(frame.pixels_per_frame_pixel() ** 2, 1.0) * 0.5:
            raise ModiseError("The lesion mask lies (mostly) outside the centre of the image that MAM-E's 512 frame "
                              "keeps; use the native-resolution crop (--mode crop).")
        win_mask |= _dilate(win_mask)  # cover every frame pixel the mask touches
    painted = _run(win=win, win_mask=win_mask, **run)
    rows, cols = frame.region_of(win_mask, margin=2)
    up = frame.sample(painted, rows, cols)
    f = 2.0 * frame.pixels_per_frame_pixel() if feather is None else feather
    result = grey.copy()
    result[rows, cols] = blend(grey[rows, cols], up, feather_weights(mask[rows, cols], f))
    return result, mask


def _dilate(m: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    return binary_dilation(m)


def _inpaint_crop(grey: np.ndarray, mask: np.ndarray | None, stats: Any, crop: int | None,
                  feather: float | None, run: dict) -> tuple[np.ndarray, np.ndarray]:
    """Native resolution: a ``crop`` window around the mask, painted and blended back."""
    from modise.synthesis.pipelines import native_resolution

    pipe = run["pipe"]
    H, W = grey.shape
    crop = crop or native_resolution(pipe)
    if crop % int(pipe.vae_scale_factor):
        raise ModiseError(f"The inpainting window {crop} must be a multiple of {pipe.vae_scale_factor}.")
    if mask is None:
        if not isinstance(stats, LesionBoxStats):
            raise ModiseError("The crop mode needs log-normal box statistics (LesionBoxStats).")
        box = sample_box(breast_mask(grey), np.random.default_rng(run["seed"]), stats, max_side=crop - 2)
        mask = box_mask((H, W), box)
    x0, y0, x1, y1 = crop_window(mask, crop)
    # Images smaller than the window are zero-padded (black, like the background).
    win = np.zeros((crop, crop), np.uint8)
    win_mask = np.zeros((crop, crop), bool)
    h, w = min(crop, H - y0), min(crop, W - x0)
    win[:h, :w] = grey[y0 : y0 + h, x0 : x0 + w]
    win_mask[:h, :w] = mask[y0 : y0 + h, x0 : x0 + w]
    painted = _run(win=win, win_mask=win_mask, **run)
    result = grey.copy()
    weights = feather_weights(win_mask[:h, :w], 3.0 if feather is None else feather)
    result[y0 : y0 + h, x0 : x0 + w] = blend(grey[y0 : y0 + h, x0 : x0 + w], painted[:h, :w], weights)
    return result, mask
