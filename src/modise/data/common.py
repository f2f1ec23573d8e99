"""Small helpers shared by the converters."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modise.errors import ModiseError


def find_child(root: Path, name: str, glob: str | None = None) -> Path:
    """``root/name`` matched case- and space-insensitively (release folders get renamed), or by glob."""
    want = name.lower().replace(" ", "").replace("_", "")
    if root.is_dir():
        for p in sorted(root.iterdir()):
            if p.name.lower().replace(" ", "").replace("_", "") == want:
                return p
        if glob:
            hits = sorted(root.glob(glob))
            if hits:
                return hits[0]
    raise ModiseError(f"'{root / name}' not found; is --root the dataset's release folder?")


def resize_plan(height: int, width: int, max_size: int | None) -> float:
    """Scale factor so the longer side is at most ``max_size`` (1.0 when no resize)."""
    if not max_size or max(height, width) <= max_size:
        return 1.0
    return max_size / float(max(height, width))


def spacing_after_resize(spacing: "list[float] | None", scale: float) -> "list[float] | None":
    """DICOM pixel spacing [row, col] (mm) of the image written at ``scale`` (None when unknown);
    kept in panoptic.json so evaluation can size lesions in mm."""
    if not spacing:
        return None
    return [round(float(v) / scale, 6) for v in spacing]


def resize_pixels(pixels: np.ndarray, scale: float) -> np.ndarray:
    """(H, W) float [0,1] -> resized uint8 (area-averaged, no flip)."""
    from PIL import Image

    h, w = pixels.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    im = Image.fromarray(np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8))
    return np.asarray(im.resize(size, Image.Resampling.BOX))


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.Resampling.NEAREST)) > 127


def check_raster(path: Path) -> tuple[int, int]:
    """Fully decode a JPEG/PNG to catch truncation; return (height, width) or raise ModiseError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.height, im.width
    except FileNotFoundError:
        raise ModiseError("file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ModiseError(f"unreadable or truncated image ({e})") from None
