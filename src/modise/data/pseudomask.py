"""Pseudo-masks from bounding boxes (VinDr-Mammo has boxes, the model wants masks).

The paper's recipe: Gaussian blur (sigma 7) inside the box, Otsu threshold, concave
hull of the foreground -> one filled segment per box (:func:`bare_pseudo_mask`).
:func:`pseudo_mask` adds what makes it agree better with radiologists: the lesion is
the brighter class (dense tissue is bright after our DICOM windowing), a box is drawn
around its lesion (a centre prior on the threshold), only the component nearest the box
centre is kept and holes are filled. ``benchmarks/bench_prepare.py`` measures all three
(box, bare recipe, this) against radiologist masks.
"""

from __future__ import annotations

import numpy as np

Box = tuple[float, float, float, float]
RECIPES = ("paper", "refined")  # bare_pseudo_mask (the paper as written) | pseudo_mask (modise's)


def clip_box(box_xyxy: Box, height: int, width: int) -> tuple[int, int, int, int] | None:
    """Clip a float ``(x0, y0, x1, y1)`` box to the pixel grid; None when nothing is left."""
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    if not np.all(np.isfinite([x0, y0, x1, y1])):
        return None
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    ix0, iy0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    ix1, iy1 = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
    if ix1 - ix0 < 1 or iy1 - iy0 < 1:
        return None
    return ix0, iy0, ix1, iy1


def box_mask(shape: tuple[int, int], box_xyxy: Box) -> np.ndarray:
    """(H, W) bool: the clipped box itself (the baseline a pseudo-mask must beat)."""
    out = np.zeros(shape, bool)
    b = clip_box(box_xyxy, *shape)
    if b is not None:
        out[b[1] : b[3], b[0] : b[2]] = True
    return out


def ellipse_mask(shape: tuple[int, int], box_xyxy: Box) -> np.ndarray:
    """(H, W) bool: the ellipse inscribed in the clipped box."""
    out = np.zeros(shape, bool)
    b = clip_box(box_xyxy, *shape)
    if b is None:
        return out
    x0, y0, x1, y1 = b
    yy, xx = np.mgrid[y0:y1, x0:x1]
    cx, cy = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2
    rx, ry = max((x1 - x0) / 2, 0.5), max((y1 - y0) / 2, 0.5)
    out[y0:y1, x0:x1] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    return out


def _otsu_foreground(crop: np.ndarray, sigma: float) -> np.ndarray | None:
    from scipy.ndimage import gaussian_filter
    from skimage.filters import threshold_otsu

    blurred = gaussian_filter(crop.astype(np.float64), sigma=sigma, mode="nearest")
    if float(blurred.max() - blurred.min()) < 1e-6:
        return None
    return blurred > threshold_otsu(blurred)


def _hull_mask(fg: np.ndarray, ratio: float) -> np.ndarray:
    """Fill the concave hull of the foreground pixel centres (crop-sized bool)."""
    import shapely
    from skimage.draw import polygon as draw_polygon

    ys, xs = np.nonzero(fg)
    if len(xs) < 3:
        return fg.copy()
    pts = shapely.multipoints(np.stack([xs, ys], axis=1).astype(np.float64))
    hull = shapely.concave_hull(pts, ratio=ratio)
    out = fg.copy()
    polys = getattr(hull, "geoms", [hull])
    for poly in polys:
        if poly.geom_type != "Polygon" or poly.is_empty:
            continue
        x, y = np.asarray(poly.exterior.coords).T
        rr, cc = draw_polygon(y, x, shape=fg.shape)
        out[rr, cc] = True
    return out


def bare_pseudo_mask(image: np.ndarray, box_xyxy: Box, sigma: float = 7.0, ratio: float = 0.3) -> np.ndarray:
    """The paper's recipe as written: blur in box, Otsu, concave hull. (H, W) bool."""
    h, w = image.shape
    out = np.zeros((h, w), bool)
    b = clip_box(box_xyxy, h, w)
    if b is None:
        return out
    x0, y0, x1, y1 = b
    fg = _otsu_foreground(image[y0:y1, x0:x1], sigma)
    if fg is None or not fg.any():
        out[y0:y1, x0:x1] = True
        return out
    out[y0:y1, x0:x1] = _hull_mask(fg, ratio)
    return out


def pseudo_mask(image: np.ndarray, box_xyxy: Box, sigma: float = 7.0, prior: float = 4.0) -> np.ndarray:
    """Segment the lesion inside a box: (H, W) float in [0, 1] -> (H, W) bool, one filled segment.

    Blur (sigma px, capped at 1/8 of the shorter box side so small lesions survive),
    Otsu threshold of the box, bright side kept. A radiologist's box is drawn around
    the lesion, so the threshold is lowered toward the centre and raised toward the
    corners by ``prior`` (in units of the crop's std) times the elliptical radius - 1.
    Then the component nearest the centre, holes filled, concave hull.
    """
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"pseudo_mask expects an (H, W) image, got shape {image.shape}")
    h, w = image.shape
    out = np.zeros((h, w), bool)
    b = clip_box(box_xyxy, h, w)
    if b is None:
        return out
    x0, y0, x1, y1 = b
    bh, bw = y1 - y0, x1 - x0
    s = min(float(sigma), max(min(bh, bw) / 8.0, 0.5))
    blurred = ndi.gaussian_filter(image[y0:y1, x0:x1].astype(np.float64), s, mode="nearest")
    std = float(blurred.std())
    if bh < 3 or bw < 3 or std < 1e-6:
        return ellipse_mask((h, w), box_xyxy)
    # the prior is centred on the box as drawn, which may reach past the image edge
    fx0, fy0, fx1, fy1 = (float(v) for v in box_xyxy)
    cx, cy = (min(fx0, fx1) + max(fx0, fx1) - 1) / 2 - x0, (min(fy0, fy1) + max(fy0, fy1) - 1) / 2 - y0
    hx, hy = max(abs(fx1 - fx0) / 2, 0.5), max(abs(fy1 - fy0) / 2, 0.5)
    yy, xx = np.mgrid[0:bh, 0:bw]
    r = np.hypot((yy - cy) / hy, (xx - cx) / hx)
    fg = (blurred - threshold_otsu(blurred)) / std - prior * (r - 1.0) > 0
    labels, n = ndi.label(fg)
    if n == 0:
        return ellipse_mask((h, w), box_xyxy)
    if n > 1:
        # nearest the centre wins; a much larger component a little farther out beats a speck
        idx = np.arange(1, n + 1)
        dmin = np.asarray(ndi.minimum(r, labels, index=idx))
        sizes = np.asarray(ndi.sum(np.ones_like(r), labels, index=idx))
        fg = labels == int(idx[np.argmin(dmin - 0.5 * np.sqrt(sizes / (bh * bw)))])
    seg = ndi.binary_fill_holes(_hull_mask(ndi.binary_fill_holes(fg), 0.3))
    out[y0:y1, x0:x1] = seg
    return out


def lesion_boxes(mask: np.ndarray, min_area: int = 100, min_fill: float = 0.15) -> list[tuple[Box, np.ndarray]]:
    """Split a binary lesion mask into (tight box xyxy, component mask) pairs.

    Specks (< ``min_area`` px) and thin annotation artefacts (a line along the skin
    fills < ``min_fill`` of its box) are left out.
    """
    from scipy import ndimage as ndi

    labels, n = ndi.label(mask)
    out = []
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        comp = labels == i
        area = int(comp[sl].sum())
        bh, bw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if area < min_area or area < min_fill * bh * bw:
            continue
        out.append(((float(sl[1].start), float(sl[0].start), float(sl[1].stop), float(sl[0].stop)), comp))
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2|A∩B| / (|A|+|B|) of two bool masks (1.0 when both are empty)."""
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def recipe_mask(recipe: str, image: np.ndarray, box_xyxy: Box, sigma: float = 7.0) -> np.ndarray:
    """The pseudo-mask of ``recipe`` ("paper": :func:`bare_pseudo_mask`, "refined": :func:`pseudo_mask`)."""
    if recipe == "paper":
        return bare_pseudo_mask(np.asarray(image, np.float32), box_xyxy, sigma=sigma)
    if recipe == "refined":
        return pseudo_mask(image, box_xyxy, sigma=sigma)
    raise ValueError(f"pseudo-mask recipe must be one of {RECIPES}, not {recipe!r}")
