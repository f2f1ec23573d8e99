"""Inpainted lesions as training data: healthy mammograms + MAM-E inpainting -> panoptic dataset.

Each synthetic image gets one lesion in a box drawn inside the breast; its mask is the
inpainted box refined by the pseudo-mask recipe (blur, Otsu, nearest component, hull;
:func:`modise.data.pseudomask.pseudo_mask`), restricted to the box. The output is the
canonical panoptic layout; merged with a dataset ``D``, D's images and ``folds.json`` are
kept as they are, so synthetic images (in no fold) are only ever used for training.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.panoptic import (
    FOLDS_JSON,
    IMAGES_DIR,
    PANOPTIC_DIR,
    Category,
    PanopticFolderWriter,
    load_panoptic_json,
)
from modise.errors import ModiseError

DEFAULT_CLASSES = ("benign", "malignant")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom"}


def list_healthy(folder: str | Path) -> list[Path]:
    """Image files (PNG/JPEG/TIFF/DICOM) directly in or below ``folder``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModiseError(f"Healthy-image folder '{folder}' not found.")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ModiseError(f"No PNG/JPEG/TIFF/DICOM images in '{folder}'.")
    return files


def refine_lesion_mask(image: np.ndarray, box_region: np.ndarray, sigma: float = 7.0) -> np.ndarray:
    """Lesion mask inside the inpainted region: pseudo-mask of its bounding box, clipped to it."""
    from modise.data.pseudomask import pseudo_mask

    ys, xs = np.nonzero(box_region)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    grey = np.asarray(image, np.float32)
    grey = grey / 255.0 if grey.max() > 1.0 else grey
    refined = pseudo_mask(grey, box, sigma) & box_region
    return refined if refined.any() else box_region


def _categories(data: dict[str, Any] | None, classes: Sequence[str] | None) -> list[Category]:
    if data is not None:
        cats = [Category.from_json(c) for c in data["categories"]]
    else:
        cats = [Category(id=i + 1, name=n, isthing=1, prompts=[n]) for i, n in enumerate(classes or DEFAULT_CLASSES)]
        return cats
    if classes:
        by_name = {c.name: c for c in cats}
        unknown = [n for n in classes if n not in by_name]
        if unknown:
            raise ModiseError(f"Classes {unknown} are not categories of the dataset ({', '.join(by_name)}).")
    return cats


def _copy_dataset(src: Path, dst: Path) -> dict[str, Any]:
    data = load_panoptic_json(src)
    for sub in (IMAGES_DIR, PANOPTIC_DIR):
        if (src / sub).is_dir():
            shutil.copytree(src / sub, dst / sub, dirs_exist_ok=True)
    if (src / FOLDS_JSON).is_file():
        shutil.copy2(src / FOLDS_JSON, dst / FOLDS_JSON)
    return data


def augment_dataset(
    inpaint_pipe: Any,
    healthy: Sequence[Path],
    n: int,
    stage: Path,
    data_root: Path | None = None,
    classes: Sequence[str] | None = None,
    seed: int = 0,
    steps: int = 40,
    guidance: float = 4.0,
    crop: int | None = None,
    sigma: float = 7.0,
    callback: Callable[..., Any] | None = None,
    warn: Callable[[str], None] = print,
    mode: str | None = None,
    stats: Any = None,
) -> dict[str, Any]:
    """Write ``n`` synthetic lesion images (plus ``data_root``'s, if given) into ``stage``.

    Image ``i`` uses healthy image ``i mod len(healthy)``, seed ``seed + i`` and a class
    drawn uniformly from ``classes`` (default: the dataset's thing classes, or
    benign/malignant). Unreadable healthy images are reported through ``warn`` and skipped.
    Lesions are inpainted as :func:`inpaint_lesion` does in ``mode`` (MAM-E's whole-image way by
    default, 40 steps at guidance 4 as ``siemens_inpainting.py:173-174``).
    Returns the written ``panoptic.json`` content.
    """
    from PIL import Image

    from modise.data.imageio import read_image, to_uint8
    from modise.synthesis.inpaint import inpaint_lesion

    (stage / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    (stage / PANOPTIC_DIR).mkdir(parents=True, exist_ok=True)
    data = _copy_dataset(data_root, stage) if data_root is not None else None
    cats = _categories(data, classes)
    pool = [c for c in cats if c.isthing and (not classes or c.name in classes)]
    if not pool:
        raise ModiseError("No lesion (thing) class to inpaint.")
    out_set = PanopticFolderWriter(stage, cats, images=data["images"] if data else (), annotations=data["annotations"] if data else ())
    next_id = max((int(im["id"]) for im in out_set.images), default=0) + 1
    rng = np.random.default_rng(seed)
    bad: set[Path] = set()
    made, i, fails = 0, 0, 0
    while made < n:
        if fails >= len(healthy):
            raise ModiseError("None of the healthy images could be used (see the warnings above).")
        src = healthy[i % len(healthy)]
        i += 1
        if src in bad:
            fails += 1
            continue
        try:
            grey = to_uint8(read_image(src).pixels)
        except ModiseError as e:
            warn(f"{e} Skipped.")
            bad.add(src)
            fails += 1
            continue
        cat = pool[int(rng.integers(len(pool)))]
        s = seed + made
        try:
            result, region = inpaint_lesion(
                inpaint_pipe, grey, auto_box=True, seed=s, steps=steps, guidance=guidance, crop=crop, callback=callback,
                mode=mode, stats=stats,
            )
        except ModiseError as e:
            warn(f"{e} Skipped.")
            bad.add(src)
            fails += 1
            continue
        fails = 0
        pixels = np.asarray(result)
        lesion = refine_lesion_mask(pixels, region, sigma)
        name = f"synth_{made:05d}"
        Image.fromarray(pixels).save(stage / IMAGES_DIR / f"{name}.png")
        image_id = next_id + made
        ys, xs = np.nonzero(region)
        out_set.add(
            {
                "id": image_id,
                "file_name": f"{name}.png",
                "height": int(pixels.shape[0]),
                "width": int(pixels.shape[1]),
                "patient_id": f"synthetic-{src.stem}",
                "source_file": str(src),
                "synthetic": True,
                "seed": s,
                "lesion_class": cat.name,
                "inpaint_box_xyxy": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
            },
            lesion.astype(np.int64),
            [{"id": 1, "category_id": cat.id}],
            png_name=f"{name}.png",
        )
        made += 1
    return out_set.finish()
