"""Pair a prediction folder with a ground-truth folder (both canonical COCO panoptic): which
prediction belongs to which GT image, and reading both id maps of a pair."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.panoptic import INSTANCES_JSON, PANOPTIC_DIR, Category, load_panoptic_json, read_id_png
from modise.errors import ModiseError


@dataclass
class Pair:
    """One GT image and its prediction (``pred_png`` None: no prediction -> empty)."""

    image_id: Any
    file_name: str
    gt_png: Path
    gt_segments: list[dict]
    pred_png: Path | None
    pred_segments: list[dict]
    height: int | None = None
    width: int | None = None
    instances: list[dict] | None = None  # instance predictions (None: PRED has no instances.json)
    record: dict | None = None  # the GT panoptic.json image (patient_id, pixel_spacing, attributes)


def _stem(name: str | None) -> str | None:
    return Path(name).stem if name else None


def load_instances(pred_root: Path, image_ids: set) -> dict[Any, list[dict]] | None:
    """``PRED/instances.json`` (a COCO results list) grouped by image id; None when absent."""
    path = pred_root / INSTANCES_JSON
    if not path.is_file():
        return None
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModiseError(f"{path}: cannot read ({e}).") from None
    if not isinstance(records, list):
        raise ModiseError(f"{path}: expected a list of COCO results (image_id, category_id, score, segmentation).")
    by_image: dict[Any, list[dict]] = {i: [] for i in image_ids}
    for k, r in enumerate(records):
        if not isinstance(r, dict) or not isinstance(r.get("image_id"), (int, str)) or r["image_id"] not in by_image:
            raise ModiseError(f"{path}: entry {k} refers to image_id {r.get('image_id') if isinstance(r, dict) else r!r}, "
                              f"which {pred_root / 'panoptic.json'} does not list.")
        by_image[r["image_id"]].append(r)
    return by_image


def pair_images(
    gt_root: Path, pred_root: Path, image_ids: Sequence[Any] | None = None, with_instances: bool = True
) -> tuple[list[Category], list[Pair], list[str], list[str]]:
    """Match prediction annotations to GT images by id (same file stem when both have one)
    or else by file name. ``image_ids``: score only these GT images (a fold); predictions of
    the others are left out silently. ``with_instances``: attach PRED/instances.json (if
    any) to the pairs. Returns categories, pairs (ascending image id), GT
    images without a prediction, prediction entries without a GT image."""
    gt, pred = load_panoptic_json(gt_root), load_panoptic_json(pred_root)
    try:
        cats = [Category.from_json(c) for c in gt["categories"]]
    except (KeyError, TypeError, ValueError):
        raise ModiseError(f"{gt_root / 'panoptic.json'}: a category lacks an integer 'id' or a 'name'.") from None
    gt_imgs = {im["id"]: im for im in gt["images"]}
    gt_anns = {a["image_id"]: a for a in gt["annotations"]}
    pred_imgs = {im["id"]: im for im in pred["images"]}
    instances = load_instances(pred_root, set(pred_imgs) | {a.get("image_id") for a in pred["annotations"]}) if with_instances else None
    keep = None if image_ids is None else set(image_ids)
    if keep is not None and not keep <= set(gt_imgs):
        raise ModiseError(f"{gt_root / 'panoptic.json'}: does not list image(s) {sorted(keep - set(gt_imgs))[:5]} of the requested fold.")
    pred_by_id, pred_by_stem = {}, {}
    for a in pred["annotations"]:
        if "image_id" not in a or "file_name" not in a:
            raise ModiseError(f"{pred_root / 'panoptic.json'}: an annotation lacks 'image_id' or 'file_name'.")
        pred_by_id[a["image_id"]] = a
        im = pred_imgs.get(a["image_id"], {})
        pred_by_stem[_stem(im.get("file_name")) or _stem(a["file_name"])] = a
    pairs, missing, used = [], [], set()
    for image_id in sorted(gt_imgs, key=lambda i: (isinstance(i, str), i)):
        im = gt_imgs[image_id]
        ann = gt_anns.get(image_id)
        name = im.get("file_name") or (ann or {}).get("file_name") or str(image_id)
        if ann is None:
            raise ModiseError(f"{gt_root / 'panoptic.json'}: image {image_id} ({name}) has no annotation.")
        stem = _stem(im.get("file_name")) or _stem(ann["file_name"])
        p = pred_by_id.get(image_id)
        if p is not None:
            p_stem = _stem(pred_imgs.get(image_id, {}).get("file_name")) or _stem(p["file_name"])
            if stem and p_stem and p_stem != stem:
                p = None
        if p is None:
            p = pred_by_stem.get(stem)
        if p is not None:
            used.add(id(p))
        if keep is not None and image_id not in keep:
            continue
        if p is None:
            missing.append(name)
        inst = None if instances is None else ([] if p is None else instances.get(p["image_id"], []))
        pairs.append(Pair(
            image_id=image_id, file_name=name,
            gt_png=gt_root / PANOPTIC_DIR / ann["file_name"], gt_segments=list(ann.get("segments_info", [])),
            pred_png=None if p is None else pred_root / PANOPTIC_DIR / p["file_name"],
            pred_segments=[] if p is None else list(p.get("segments_info", [])),
            height=im.get("height"), width=im.get("width"), instances=inst, record=im,
        ))
    extra = [str(a["file_name"]) for a in pred["annotations"] if id(a) not in used]
    return cats, pairs, missing, extra


def _read(path: Path, where: str, what: str) -> np.ndarray:
    if not path.is_file():
        raise ModiseError(f"{where}: {what} PNG '{path}' not found.")
    try:
        return read_id_png(path, compact=True)
    except Exception as e:  # PIL raises several types for broken files
        raise ModiseError(f"{where}: cannot read {what} PNG '{path}' ({e}).") from None


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray, str]:
    """Read both id maps; a missing prediction is an empty map of the GT's size."""
    where = f"image {pair.image_id} ({pair.file_name})"
    gt = _read(pair.gt_png, where, "ground-truth")
    if pair.height and pair.width and gt.shape != (int(pair.height), int(pair.width)):
        raise ModiseError(f"{where}: the ground-truth PNG is {gt.shape[0]}x{gt.shape[1]} but panoptic.json says {pair.height}x{pair.width}.")
    pred = np.zeros_like(gt) if pair.pred_png is None else _read(pair.pred_png, where, "predicted")
    return gt, pred, where
