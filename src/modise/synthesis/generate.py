"""Text-to-image mammograms: grey, left-facing from the model, mirrored for right breasts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from modise.errors import ModiseError

SWEEP_GUIDANCE = (4.0, 6.0, 8.0, 10.0, 12.0, 14.0)  # the poster's guidance study: 4..14


def _laterality(laterality: str | None) -> str:
    lat = (laterality or "L").strip().upper()[:1]
    if lat not in ("L", "R"):
        raise ModiseError(f"Laterality must be L or R, not '{laterality}'.")
    return lat


def generate_images(
    pipe: Any,
    prompt: str,
    n: int = 1,
    seed: int = 0,
    steps: int = 24,
    guidance: float = 5.0,
    laterality: str | None = "L",
    resolution: int | None = None,
    callback: Callable[..., Any] | None = None,
) -> list:
    """Generate ``n`` greyscale PIL images; image ``i`` uses seed ``seed + i`` (reproducible alone).

    MAM-E images face left; ``laterality="R"`` mirrors them.
    """
    import torch
    from PIL import ImageOps

    from modise.synthesis.pipelines import native_resolution

    lat = _laterality(laterality)
    if n < 1 or steps < 1:
        raise ModiseError("--n and --sampling-steps must be at least 1.")
    side = resolution or native_resolution(pipe)
    if side % int(pipe.vae_scale_factor):
        raise ModiseError(f"Resolution {side} must be a multiple of {pipe.vae_scale_factor}.")
    images = []
    for i in range(n):
        gen = torch.Generator("cpu").manual_seed(seed + i)
        out = pipe(
            prompt,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=gen,
            height=side,
            width=side,
            callback_on_step_end=callback,
        ).images[0]
        grey = out.convert("L")
        images.append(ImageOps.mirror(grey) if lat == "R" else grey)
    return images


def image_grid(rows: Sequence[Sequence[Any]], pad: int = 4, col_labels: Sequence[str] = (), row_labels: Sequence[str] = (),
               label_px: int = 14) -> Any:
    """Tile equally sized PIL images (rows x cols) into one grey image with a black gutter; optional
    column labels in a band above and row labels written over each row's first cell."""
    from PIL import Image, ImageDraw

    w, h = rows[0][0].size
    ncol = max(len(r) for r in rows)
    top = label_px if col_labels else 0
    grid = Image.new("L", (ncol * w + (ncol - 1) * pad, top + len(rows) * h + (len(rows) - 1) * pad), 0)
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            grid.paste(im.convert("L"), (c * (w + pad), top + r * (h + pad)))
    draw = ImageDraw.Draw(grid)
    for c, text in enumerate(col_labels):
        draw.text((c * (w + pad) + 2, 1), text, fill=255)
    for r, text in enumerate(row_labels):
        y = top + r * (h + pad) + 2
        draw.rectangle((0, y, min(w, 6 * len(text) + 4), y + 11), fill=0)  # legible on any image
        draw.text((2, y), text, fill=255)
    return grid


def guidance_sweep(
    pipe: Any,
    prompts: Sequence[str],
    guidances: Sequence[float] = SWEEP_GUIDANCE,
    seed: int = 0,
    steps: int = 24,
    laterality: str | None = "L",
    resolution: int | None = None,
    callback: Callable[..., Any] | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """Grid image: one row per prompt, one column per guidance scale, same seed per row.

    Returns the grid and one record per cell (row, col, prompt, guidance, seed).
    """
    rows, records = [], []
    for r, prompt in enumerate(prompts):
        row = []
        for c, g in enumerate(guidances):
            row += generate_images(pipe, prompt, 1, seed + r, steps, g, laterality, resolution, callback)
            records.append({"row": r, "col": c, "prompt": prompt, "guidance": float(g), "seed": seed + r})
        rows.append(row)
    cols = [f"guidance {float(g):g}" for g in guidances]
    return image_grid(rows, col_labels=cols, row_labels=[_short(p) for p in prompts]), records


def _short(prompt: str) -> str:
    """The part of a MAM-E prompt that differs between sweep rows (its 'with ...' tail)."""
    return prompt.split(" with ", 1)[1] if " with " in prompt else prompt
