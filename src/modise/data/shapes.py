"""VGG Image Annotator (VIA) region shapes -> boolean masks.

Shapes: ``polygon`` / ``polyline`` (closed, ``all_points_x/y``), ``ellipse``
(``cx, cy, rx, ry`` [, ``theta``]), ``circle`` (``cx, cy, r``), ``rect`` (``x, y, width,
height``) and ``point`` (``cx, cy``): a point marks a lesion without outline, so it becomes
a small disk of radius ``max(3, 1% of the shorter image side)`` px.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


class ShapeError(ValueError):
    """A region that cannot become a mask; the message is the reason for the skip report."""


def parse_shape(text: Any) -> dict[str, Any]:
    """Parse VIA's ``region_shape_attributes`` JSON; raise ShapeError on broken or empty input."""
    if isinstance(text, dict):
        return text
    if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
        raise ShapeError("empty region_shape_attributes")
    try:
        d = json.loads(str(text))
    except json.JSONDecodeError as e:
        raise ShapeError(f"broken shape JSON ({e.msg})") from None
    if not isinstance(d, dict):
        raise ShapeError("shape JSON is not an object")
    return d


def point_radius(height: int, width: int) -> float:
    return max(3.0, 0.01 * min(height, width))


def _num(d: dict[str, Any], key: str) -> float:
    try:
        v = float(d[key])
    except KeyError:
        raise ShapeError(f"{d.get('name')} shape lacks '{key}'") from None
    except (TypeError, ValueError):
        raise ShapeError(f"{d.get('name')} shape has a non-numeric '{key}'") from None
    if not math.isfinite(v):
        raise ShapeError(f"{d.get('name')} shape has a non-finite '{key}'")
    return v


def shape_to_mask(shape: dict[str, Any], height: int, width: int, scale: float = 1.0) -> np.ndarray:
    """Rasterise one VIA shape (coordinates multiplied by ``scale``) to an (H, W) bool mask."""
    from skimage.draw import disk, ellipse, polygon

    name = str(shape.get("name", "")).lower()
    out = np.zeros((height, width), bool)
    if name in ("polygon", "polyline"):
        try:
            xs = np.asarray(shape["all_points_x"], dtype=float) * scale
            ys = np.asarray(shape["all_points_y"], dtype=float) * scale
        except (KeyError, TypeError, ValueError):
            raise ShapeError(f"{name} without numeric all_points_x/all_points_y") from None
        if xs.shape != ys.shape or xs.ndim != 1:
            raise ShapeError(f"{name} with mismatched point lists")
        area = 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) if len(xs) >= 3 else 0.0
        if len(xs) < 3 or area < 1.0:
            raise ShapeError(f"degenerate {name} ({len(xs)} points, area {area:.1f} px)")
        rr, cc = polygon(ys, xs, shape=(height, width))
    elif name == "ellipse":
        cx, cy, rx, ry = (_num(shape, k) * scale for k in ("cx", "cy", "rx", "ry"))
        theta = float(shape.get("theta", 0.0) or 0.0)
        if rx <= 0 or ry <= 0:
            raise ShapeError("degenerate ellipse (non-positive radius)")
        # VIA's theta rotates x toward y in image coordinates; skimage's rotation is counter-clockwise in (row, col)
        rr, cc = ellipse(cy, cx, max(ry, 0.5), max(rx, 0.5), shape=(height, width), rotation=-theta)
    elif name == "circle":
        cx, cy, r = (_num(shape, k) * scale for k in ("cx", "cy", "r"))
        if r <= 0:
            raise ShapeError("degenerate circle (non-positive radius)")
        rr, cc = disk((cy, cx), max(r, 0.5), shape=(height, width))
    elif name == "rect":
        x, y, w, h = (_num(shape, k) * scale for k in ("x", "y", "width", "height"))
        if w <= 0 or h <= 0:
            raise ShapeError("degenerate rect (non-positive size)")
        rr, cc = polygon([y, y, y + h, y + h], [x, x + w, x + w, x], shape=(height, width))
    elif name == "point":
        cx, cy = (_num(shape, k) * scale for k in ("cx", "cy"))
        rr, cc = disk((cy, cx), point_radius(height, width), shape=(height, width))
    else:
        raise ShapeError(f"unknown shape '{shape.get('name')}'")
    out[rr, cc] = True
    if not out.any():
        raise ShapeError(f"{name} lies outside the image")
    return out
