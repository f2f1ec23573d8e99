"""A user's own folders -> canonical panoptic layout.

``--images DIR`` holds PNG/JPEG/TIFF/DICOM images; ``--masks DIR`` holds masks with the
same stem (``name.png`` or ``name_mask.png``; PNG/TIFF, or JPEG, which is lossy and so always
read as binary at half its brightest grey: 0/255 and 0/1 masks both work, instance ids do not survive). A mask with one non-zero value is binary:
each connected component becomes an instance. A mask with several non-zero values (grey
or colour-coded ids) is instance-labelled: each value is an instance. With one class all
instances get it; with several, masks live in one sub-folder per class (``masks/<class>/``).

Folds are split by patient: the patient id is the DICOM PatientID, else the first group (or
whole match) of ``patient_regex`` in the file stem; the default, :data:`DEFAULT_PATIENT_REGEX`,
takes the first ``_``-separated part that holds a digit, so ``flipped_P150_L_DM_CC`` and
``flipped_P150_L_DM_MLO`` are both patient ``P150`` (a plain "before the first _" rule would
make every file of the CDD-CESM sample, ``flipped_...``, one patient). A stem it does not
match is its own patient.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import re

import numpy as np

from modise.data.common import resize_mask, resize_pixels, resize_plan, spacing_after_resize
from modise.data.imageio import DICOM_SUFFIXES, RASTER_SUFFIXES
from modise.data.panoptic import Category
from modise.errors import ModiseError


JPEG_SUFFIXES = {".jpg", ".jpeg"}
DEFAULT_PATIENT_REGEX = r"(?:^|_)([^_]*\d[^_]*)"
# A mask is binary or instance ids: a few values. A grey image has many, and a JPEG mask's only
# mid-greys are compression noise at edges (< 1% of the pixels of the CDD-CESM sample masks,
# 15-49% of its mammograms).
MAX_MASK_VALUES, MAX_JPEG_MID_GREY = 64, 0.05


def patient_id(stem: str, dataset: Any = None, regex: str | None = None) -> tuple[str, str]:
    """-> (patient id, source: "dicom" | "regex" | "name") of an image for patient-level folds."""
    pid = str(getattr(dataset, "PatientID", "") or "").strip() if dataset is not None else ""
    if pid:
        return pid, "dicom"
    m = re.search(regex or DEFAULT_PATIENT_REGEX, stem)
    if m:
        return (m.group(1) if m.groups() and m.group(1) else m.group(0)), "regex"
    return stem, "name"


def _check_is_mask(path: Path, arr: np.ndarray) -> None:
    """Refuse a grey image (e.g. the mammograms themselves) given as a mask."""
    if path.suffix.lower() in JPEG_SUFFIXES:
        mid = float(((arr > 32) & (arr < 224)).mean())
        if mid > MAX_JPEG_MID_GREY:
            raise ModiseError(f"--masks: '{path}' looks like an image, not a mask ({mid:.0%} of its pixels are mid-grey); "
                              f"masks must be binary or instance-label images.")
        return
    # distinct grey values, or distinct colours of an RGB mask (one row per pixel)
    n = len(np.unique(arr.reshape(-1, arr.shape[-1]), axis=0) if arr.ndim == 3 else np.unique(arr)) - 1
    if n > MAX_MASK_VALUES:
        raise ModiseError(f"--masks: '{path}' looks like an image, not a mask ({n} distinct values, at most "
                          f"{MAX_MASK_VALUES} instance ids expected); masks must be binary or instance-label images.")


def mask_instances(path: Path, min_area: int = 1) -> list[np.ndarray]:
    """Instances of one mask file as (H, W) bool arrays; a grey image raises :class:`ModiseError`."""
    from PIL import Image
    from scipy import ndimage as ndi

    with Image.open(path) as im:
        im.load()
        arr = np.asarray(im.convert("L") if path.suffix.lower() in JPEG_SUFFIXES else im)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    _check_is_mask(path, arr)
    if path.suffix.lower() in JPEG_SUFFIXES:
        # compression noise would otherwise become instances: binary at half the brightest grey, so
        # 0/255 masks cut at 128 and 0/1 masks (noise of +-1, an overshoot to 2) at 1
        arr = (arr >= max(1, (int(arr.max()) + 1) // 2)).astype(np.uint8)
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.int64)
        arr = arr[..., 0] + 256 * arr[..., 1] + 65536 * arr[..., 2]
    values = [v for v in np.unique(arr) if v != 0]
    if len(values) == 1 or (len(values) == 2 and arr.dtype == np.uint8 and set(values) <= {1, 255}):
        labels, n = ndi.label(arr > 0)
        masks = [labels == i for i in range(1, n + 1)]
    else:
        masks = [arr == v for v in values]
    return [m for m in masks if m.sum() >= min_area]


def _find_mask(masks_dir: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}_mask", f"{stem}-mask", f"{stem}_seg"):
        for suf in (".png", ".PNG", ".tif", ".tiff", ".jpg", ".JPG", ".jpeg"):
            p = masks_dir / f"{name}{suf}"
            if p.is_file():
                return p
    return None


def prepare_folder(
    images: str | Path,
    masks: str | Path,
    out: str | Path,
    classes: list[str] | None = None,
    max_size: int | None = None,
    strict: bool = False,
    overwrite: bool = False,
    k: int = 5,
    seed: int = 0,
    quiet: bool = False,
    min_area: int = 16,
    patient_regex: str | None = None,
    workers: int | None = 1,
) -> dict[str, Any]:
    """Convert image and mask folders; returns the prepare report.

    Instances smaller than ``min_area`` pixels (specks, stray annotation dots) are dropped.
    The report's ``patient_ids`` says how patient ids were found (see :func:`patient_id`). ``workers``:
    processes reading the images (None: all cores); the output is the same for any number.
    """
    from modise.data.parallel import convert_items
    from modise.data.writer import DatasetWriter, encode_image
    from modise.progress import track
    from modise.outputs import check_output_dir, output_dir

    images, masks = Path(images), Path(masks)
    for d, flag in ((images, "--images"), (masks, "--masks")):
        if not d.is_dir():
            raise ModiseError(f"{flag} '{d}' is not a folder.")
    check_output_dir(out, overwrite, [images, masks])
    if patient_regex is not None:
        try:
            re.compile(patient_regex)
        except re.error as e:
            raise ModiseError(f"--patient-regex '{patient_regex}' is not a regular expression ({e}).") from None
    if images.resolve() == masks.resolve():
        raise ModiseError("--masks is the --images folder; masks must be binary or instance-label images of their own.")
    classes = list(classes or ["lesion"])
    cats = [Category(i, c, 1, [f"a {c.replace('_', ' ')} in a mammogram"]) for i, c in enumerate(classes, start=1)]
    class_dirs = {c.id: masks for c in cats} if len(cats) == 1 else {c.id: masks / c.name for c in cats}
    for cid, d in class_dirs.items():
        if not d.is_dir():
            raise ModiseError(f"With several classes, masks go in one sub-folder per class; '{d}' is missing.")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in RASTER_SUFFIXES | DICOM_SUFFIXES)
    if not files:
        raise ModiseError(f"No images (PNG/JPEG/TIFF/DICOM) in '{images}'.")
    sources: dict[str, int] = {"dicom": 0, "regex": 0, "name": 0}
    with output_dir(out, overwrite, [images, masks]) as stage:
        w = DatasetWriter(stage, cats, source="folder", strict=strict, quiet=quiet)
        ctx = dict(class_dirs=class_dirs, masks=masks, min_area=min_area, max_size=max_size, patient_regex=patient_regex)
        convert_items(_folder_item, ctx, track(files, "images", enabled=not quiet), w, workers,
                      on_note=lambda _, how: sources.__setitem__(how, sources[how] + 1), encode=encode_image)
        rule = (f"DICOM PatientID, else the file name's match of --patient-regex '{patient_regex or DEFAULT_PATIENT_REGEX}'"
                + ("" if patient_regex else " (default: the first _-separated part holding a digit)") + ", else the file name")
        return w.finish(k=k, seed=seed, classes=classes, patient_ids={"rule": rule, "images_by_source": sources})


def _folder_item(ctx: dict[str, Any], path: Path, w: Any) -> None:
    """One image and its mask(s): read, instances, ``w.add`` (or skip); runs in a worker process
    (:func:`modise.data.parallel.convert_items`)."""
    from modise.data.imageio import read_image

    class_dirs, masks, min_area, max_size, patient_regex = (ctx[k] for k in ("class_dirs", "masks", "min_area", "max_size", "patient_regex"))
    found = {cid: _find_mask(d, path.stem) for cid, d in class_dirs.items()}
    if not any(found.values()):
        w.skip(path.name, "no mask with the same name")
        return
    try:
        loaded = read_image(path)
    except ModiseError as e:
        w.skip(path.name, str(e).removeprefix(f"{path}: "))
        return
    h, wd = loaded.pixels.shape
    scale = resize_plan(h, wd, max_size)
    oh, ow = (round(h * scale), round(wd * scale)) if scale != 1.0 else (h, wd)
    segments, bad = [], False
    for cid, mpath in found.items():
        if mpath is None:
            continue
        try:
            inst = mask_instances(mpath, min_area)
        except OSError as e:
            w.skip(str(mpath.relative_to(masks)), f"unreadable mask ({e})")
            bad = True
            break
        if inst and inst[0].shape != (h, wd):
            w.skip(str(mpath.relative_to(masks)), f"mask size {inst[0].shape[::-1]} differs from image {wd}x{h}")
            bad = True
            break
        segments += [(resize_mask(m, (oh, ow)) if scale != 1.0 else m, cid) for m in inst]
    if bad:
        return
    pid, how = patient_id(path.stem, loaded.dataset, patient_regex)
    w.note("source", how)
    common = dict(height=oh, width=ow, patient_id=pid, laterality=loaded.meta.get("laterality", ""),
                  view=loaded.meta.get("view", ""), modality="MG" if loaded.is_dicom else "", source_file=path.name,
                  **({"manufacturer": str(loaded.meta.get("manufacturer") or "").strip(),
                      "pixel_spacing": spacing_after_resize(loaded.meta.get("pixel_spacing"), scale)} if loaded.is_dicom else {}))
    if scale == 1.0 and not loaded.is_dicom and path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        w.add(path.stem, segments, copy_from=path, **common)
    else:
        w.add(path.stem, segments, pixels=resize_pixels(loaded.pixels, scale) if scale != 1.0 else loaded.uint8, **common)
