"""The breast region of a mammogram: the largest bright connected component.

The background of a mammogram is near black, so Otsu's threshold on a lightly blurred
image separates it from tissue; the largest component drops labels and markers, and
hole filling keeps dark fatty regions inside the breast.
"""

from __future__ import annotations

import numpy as np


def as_grey_float(image) -> np.ndarray:
    """PIL image or array (uint8 / uint16 / float in [0, 1]) -> (H, W) float32 in [0, 1]."""
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=2)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def breast_mask(image, sigma: float = 2.0) -> np.ndarray:
    """(H, W) bool mask of the breast: largest component above the Otsu threshold, holes filled."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    grey = ndimage.gaussian_filter(as_grey_float(image), sigma)
    if float(grey.max() - grey.min()) < 1e-6:
        return np.zeros(grey.shape, bool)
    # Half of Otsu: Otsu alone can split fatty from dense tissue in a bright breast.
    fg = grey > 0.5 * threshold_otsu(grey)
    labels, n = ndimage.label(fg)
    if n == 0:
        return fg
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(labels == int(sizes.argmax()))


def inner_breast(breast: np.ndarray, margin: float) -> np.ndarray:
    """``breast`` (H, W bool) shrunk by ``margin`` x its longest side (at least 1 px) from its edge and
    from the image border, so that a lesion box drawn inside it keeps clear of the skin line and
    never sits on the image's edge."""
    from scipy import ndimage

    breast = np.asarray(breast, bool)
    px = max(1, int(round(margin * max(breast.shape))))
    return ndimage.binary_erosion(breast, iterations=px) if breast.any() else breast
