"""Synthetic phantom mammograms: the embedded default dataset for the demo and the tests.

Each phantom has a breast silhouette against the chest wall (left edge), a bright skin
line, a thickness fall-off toward the nipple, parenchyma from power-law (1/f^beta)
noise, a pectoral muscle triangle in MLO, and 0-3 lesions of two classes that differ
clearly in appearance so a tiny model can learn them on a CPU in minutes:

- ``circumscribed_mass``: round/oval, smooth edge, bright and homogeneous;
- ``spiculated_mass``: irregular lobulated core, dimmer and textured, with spicules
  radiating beyond it (the mask is the core, as radiologists outline it).

Deterministic from the generator's state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modise.data.panoptic import Category

CLASSES = ("circumscribed_mass", "spiculated_mass")
CATEGORIES = [
    Category(1, "circumscribed_mass", 1, ["a circumscribed mass in a mammogram", "a round well-defined mass in a mammogram"]),
    Category(2, "spiculated_mass", 1, ["a spiculated mass in a mammogram", "an irregular mass with spicules in a mammogram"]),
]


def power_law_noise(rng: np.random.Generator, size: int, beta: float = 3.0) -> np.ndarray:
    """(size, size) float64 Gaussian noise with power spectrum ~ 1/f^beta, zero mean, unit std."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0 / size
    amp = f ** (-beta / 2.0)
    amp[0, 0] = 0.0
    spec = amp * (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape))
    field = np.fft.irfft2(spec, s=(size, size))
    return (field - field.mean()) / (field.std() + 1e-12)


def _silhouette(rng: np.random.Generator, size: int, view: str) -> tuple[np.ndarray, np.ndarray]:
    """Breast mask (bool) and normalised depth from the chest wall (0 at wall, 1 at the edge)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    cy = rng.uniform(0.47, 0.53) if view == "CC" else rng.uniform(0.52, 0.6)
    a = rng.uniform(0.62, 0.8)  # reach from the chest wall
    b = rng.uniform(0.38, 0.46) if view == "CC" else rng.uniform(0.42, 0.5)
    theta = np.arctan2(yy - cy, xx / a * b)
    wobble = 1.0 + 0.03 * np.sin(3 * theta + rng.uniform(0, 6.3)) + 0.02 * np.sin(5 * theta + rng.uniform(0, 6.3))
    rho = np.hypot(xx / a, (yy - cy) / b) / wobble
    mask = rho <= 1.0
    if view == "MLO":  # the breast runs up into the axilla along the wall
        mask |= (xx < 0.25 * (1 - yy / max(cy, 1e-3)) + 0.05) & (yy < cy)
        rho = np.where(mask & (rho > 1), 0.99, rho)
    return mask, np.clip(rho, 0, 1)


def _lesion(rng: np.random.Generator, size: int, cls: str, cx: float, cy: float, r: float) -> tuple[np.ndarray, np.ndarray]:
    """(intensity added, bool mask) of one lesion centred at (cx, cy) px with radius r px."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dx, dy = xx - cx, yy - cy
    ang = np.arctan2(dy, dx)
    if cls == "circumscribed_mass":
        e, rot = rng.uniform(0.8, 1.0), rng.uniform(0, np.pi)
        u = dx * np.cos(rot) + dy * np.sin(rot)
        v = -dx * np.sin(rot) + dy * np.cos(rot)
        rho = np.hypot(u, v / e) / r
        mask = rho <= 1.0
        add = rng.uniform(0.38, 0.46) / (1 + np.exp((rho - 1.0) * r / 1.2))  # smooth sharp edge
        return add, mask
    # spiculated: lobulated boundary + spicules, dimmer, textured core
    radius = np.ones_like(ang)
    for k in (2, 3, 5, 7):
        radius += rng.uniform(0.05, 0.14) * np.sin(k * ang + rng.uniform(0, 2 * np.pi))
    rho = np.hypot(dx, dy) / (r * radius)
    mask = rho <= 1.0
    tex = 0.85 + 0.15 * np.cos(np.hypot(dx, dy) / max(r, 1) * 9 + rng.uniform(0, 6))
    add = rng.uniform(0.24, 0.3) * tex / (1 + np.exp((rho - 1.0) * r / 2.5))
    spic = np.zeros_like(add)
    for _ in range(int(rng.integers(8, 14))):
        phi = rng.uniform(0, 2 * np.pi)
        length = r * rng.uniform(1.5, 2.4)
        along = dx * np.cos(phi) + dy * np.sin(phi)
        across = np.abs(-dx * np.sin(phi) + dy * np.cos(phi))
        width = max(size / 256.0, 0.8) * rng.uniform(0.8, 1.4) * np.clip(1 - along / length, 0, 1)
        line = (along > 0) & (along < length) & (across < width + 0.5)
        spic = np.maximum(spic, line * (0.2 * np.clip(1.2 - along / length, 0, 1)))
    return np.maximum(add, spic), mask


def make_phantom(
    rng: np.random.Generator, size: int = 256, view: str = "CC", n_lesions: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """One phantom: (H, W) float32 image in [0, 1], (H, W) int32 instance ids (0 = background), lesion info.

    Lesion info dicts: ``id`` (instance id in the id map), ``class`` (name), ``category_id``,
    ``center`` (x, y px), ``radius`` px, ``bbox`` (x, y, w, h).
    """
    from scipy.ndimage import gaussian_filter

    view = view.upper()
    if view not in ("CC", "MLO"):
        raise ValueError(f"view must be CC or MLO, got {view!r}")
    breast, rho = _silhouette(rng, size, view)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    # parenchyma: power-law texture, denser near the wall, fading toward the nipple
    tex = power_law_noise(rng, size, beta=rng.uniform(2.8, 3.2))
    density = rng.uniform(0.25, 0.6)
    gland = 1 / (1 + np.exp(-(tex + 1.2 * (0.6 - rho) - (1 - 2 * density)) * 3.0))
    thickness = np.sqrt(np.clip(1 - rho**4, 0, 1))
    img = (0.25 + 0.16 * gland) * (0.55 + 0.45 * thickness)
    img += 0.03 * gaussian_filter(rng.standard_normal((size, size)), 0.7)
    if view == "MLO":
        slope = rng.uniform(1.6, 2.4)
        top = rng.uniform(0.28, 0.4)
        pect = (xx < top * (1 - yy * slope)) & breast
        pect_soft = gaussian_filter(pect.astype(np.float64), 1.5)
        img = img * (1 - pect_soft) + pect_soft * (0.62 + 0.04 * tex)
    else:
        pect = np.zeros_like(breast)
    # skin line: a thin bright rim just inside the silhouette
    from scipy.ndimage import distance_transform_edt

    depth = distance_transform_edt(breast) / size
    img += 0.12 * np.exp(-((depth - 1.5 / size) ** 2) / (2 * (1.0 / size) ** 2)) * breast
    img = np.where(breast, img, 0.0)

    ids = np.zeros((size, size), np.int32)
    info: list[dict[str, Any]] = []
    # mostly 1-3 lesions: empty phantoms teach little, a tenth keeps false positives in check
    n = (0 if rng.random() < 0.1 else int(rng.integers(1, 4))) if n_lesions is None else int(n_lesions)
    placed = 0
    for _attempt in range(60):
        if placed >= n:
            break
        r = rng.uniform(0.08, 0.14) * size
        cx, cy = rng.uniform(0.1, 0.7) * size, rng.uniform(0.15, 0.85) * size
        ix, iy = int(cx), int(cy)
        # inside the breast, clear of the skin, the pectoral muscle and other lesions
        if not breast[iy, ix] or depth[iy, ix] * size < r * 1.15 or pect[iy, ix]:
            continue
        if any(np.hypot(cx - d["center"][0], cy - d["center"][1]) < r + d["radius"] + 0.04 * size for d in info):
            continue
        cls = CLASSES[int(rng.integers(0, 2))]
        add, mask = _lesion(rng, size, cls, cx, cy, r)
        mask &= breast  # over the pectoral muscle too: the disc is drawn there as well
        if mask.sum() < 10:
            continue
        img = img + add * breast
        placed += 1
        ids[mask & (ids == 0)] = placed
        ys, xs = np.nonzero(ids == placed)
        info.append(
            {
                "id": placed,
                "class": cls,
                "category_id": CLASSES.index(cls) + 1,
                "center": (float(cx), float(cy)),
                "radius": float(r),
                "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs) + 1), int(np.ptp(ys) + 1)],
            }
        )
    return np.clip(img, 0, 1).astype(np.float32), ids, info


def prepare_synthetic(
    out: str | Path, n: int = 40, seed: int = 0, size: int = 256, overwrite: bool = False, k: int = 5, quiet: bool = False
) -> dict[str, Any]:
    """Write ``n`` phantoms (patients with a CC and an MLO view each) in the canonical layout; return the report."""
    from modise.data.writer import DatasetWriter
    from modise.progress import track
    from modise.errors import ModiseError
    from modise.outputs import output_dir

    if n < 1:
        raise ModiseError(f"--n must be at least 1, got {n}.")
    if size < 64:
        raise ModiseError(f"--size must be at least 64 pixels, got {size}.")
    rng = np.random.default_rng(seed)
    with output_dir(out, overwrite) as stage:
        writer = DatasetWriter(stage, CATEGORIES, source="synthetic", quiet=quiet)
        for i in track(range(n), "phantoms", enabled=not quiet):
            patient, view = i // 2, ("CC", "MLO")[i % 2]
            if view == "CC":
                side = "L" if rng.random() < 0.5 else "R"
            img, ids, info = make_phantom(rng, size=size, view=view)
            if side == "R":  # right breasts face the other way, as on a viewer
                img, ids = img[:, ::-1], ids[:, ::-1]
            segments = [(ids == d["id"], d["category_id"]) for d in info]
            writer.add(
                f"phantom_{patient:04d}_{side}_{view}",
                segments,
                pixels=np.clip(np.rint(img * 255), 0, 255).astype(np.uint8),
                height=size,
                width=size,
                patient_id=f"phantom{patient:04d}",
                laterality=side,
                view=view,
                modality="synthetic",
                source_file=f"phantom seed={seed} index={i}",
            )
        return writer.finish(k=k, seed=seed, seed_used=seed, size=size)
