"""The canonical on-disk format: COCO panoptic (``panoptic.json`` + ``panoptic/*.png``).

Segment ids are encoded in PNG colour as ``id = R + 256*G + 256**2*B``; 0 is background
(unlabelled pixels are background, never void). This module is the one owner of that format:
id <-> RGB coding, reading an id PNG or ``panoptic.json``, turning a model result into
segment records, and :class:`PanopticFolderWriter`, which every command that writes panoptic
results (``prepare``, ``predict``, ``augment``, ``serve``) goes through.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modise.errors import ModiseError

PANOPTIC_JSON = "panoptic.json"
PANOPTIC_DIR = "panoptic"
IMAGES_DIR = "images"
FOLDS_JSON = "folds.json"
INSTANCES_JSON = "instances.json"  # beside panoptic.json in a prediction folder


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int64 segment ids."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) int -> (H, W, 3) uint8 colour encoding of segment ids."""
    ids = np.asarray(ids)
    if ids.size and 0 <= ids.min() and ids.max() < 256:  # the usual case (lesions): R only, one pass
        rgb = np.zeros((*ids.shape, 3), np.uint8)
        rgb[..., 0] = ids
        return rgb
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, (ids // 256) % 256, (ids // 65536) % 256], axis=-1).astype(np.uint8)


def read_id_png(path: str | Path, compact: bool = False) -> np.ndarray:
    """Panoptic PNG -> (H, W) segment ids, int64; ``compact``: uint8 when every id is below 256
    (G = B = 0, the usual case for lesions) else int32, which is faster to match."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    if not compact:
        return rgb2id(rgb)
    if not rgb[..., 1:].any():
        return rgb[..., 0].copy()
    return rgb[..., 0].astype(np.int32) | (rgb[..., 1].astype(np.int32) << 8) | (rgb[..., 2].astype(np.int32) << 16)


def encode_id_png(ids: np.ndarray) -> bytes:
    """(H, W) int segment ids -> the bytes of their RGB-coded PNG."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(id2rgb(ids)).save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def write_id_png(path: str | Path, ids: np.ndarray) -> None:
    """(H, W) int segment ids -> RGB-coded PNG, written atomically (temporary file + rename)."""
    from modise.outputs import write_bytes_atomic

    write_bytes_atomic(path, encode_id_png(ids))


def bbox_xywh(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _boxes(ids: np.ndarray) -> dict[int, tuple[slice, slice]]:
    """Segment id -> the slices of its bounding box, in one pass over ``ids`` (small non-negative ids;
    else empty, and the caller scans per segment)."""
    from scipy import ndimage

    ids = np.asarray(ids)
    if not ids.size or ids.min() < 0 or ids.max() >= 1 << 16:
        return {}
    return {i + 1: sl for i, sl in enumerate(ndimage.find_objects(ids.astype(np.int32, copy=False))) if sl is not None}


def _shift(box: list[int], sl: tuple[slice, slice]) -> list[int]:
    """A box found inside the window ``sl`` -> image coordinates."""
    x, y, w, h = box
    return [x + sl[1].start, y + sl[0].start, w, h] if w else box


@dataclass
class Category:
    """A panoptic class; ``prompts`` are the text(s) the class head encodes (synonyms); ``dicom``: optional
    DICOM codes of the class (``{"property_type": {"value", "scheme", "meaning"}, "property_category": ...}``,
    see :mod:`modise.dicom.codes`), else chosen by its name."""

    id: int
    name: str
    isthing: int = 1
    prompts: list[str] = field(default_factory=list)
    dicom: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "name": self.name, "isthing": self.isthing, "prompts": self.prompts or [self.name]}
        return {**out, "dicom": self.dicom} if self.dicom else out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Category":
        return cls(id=int(d["id"]), name=str(d["name"]), isthing=int(d.get("isthing", 1)), prompts=list(d.get("prompts") or [d["name"]]),
                   dicom=d.get("dicom") or None)


def load_panoptic_json(root: str | Path) -> dict[str, Any]:
    """Read ``root/panoptic.json`` with a clear error when it is missing or broken."""
    path = Path(root) / PANOPTIC_JSON
    if not path.is_file():
        raise ModiseError(f"{path}: not found; is '{root}' a dataset in the canonical panoptic layout?")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModiseError(f"{path}: invalid JSON ({e}).") from None
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ModiseError(f"{path}: missing the '{key}' list.")
    return data


def panoptic_record(result: dict[str, Any]) -> tuple[np.ndarray, list[dict]]:
    """A model result's ``panoptic_seg`` (ids [H, W] tensor or array, segment dicts) ->
    (segment id map [H, W] int64, [{id, category_id, score, area, isthing}]); empty segments dropped."""
    ids, segments = result["panoptic_seg"]
    ids = np.asarray(ids.detach().cpu() if hasattr(ids, "detach") else ids).astype(np.int64)
    counts = np.bincount(ids.ravel(), minlength=max((int(s["id"]) + 1 for s in segments), default=1)) if segments else []
    out = []
    for s in segments:
        area = int(counts[int(s["id"])])
        if area == 0:
            continue
        out.append({
            "id": int(s["id"]), "category_id": int(s["category_id"]), "score": float(s.get("score", 1.0)),
            "area": area, "isthing": int(s.get("isthing", 1)),
        })
    return ids, out


class PanopticFolderWriter:
    """Write panoptic results: one id PNG per image plus ``panoptic.json`` (and, when any image
    came with instances, ``instances.json``, a COCO results list), every file atomically.

    Default layout ``root/panoptic/*.png`` + ``root/panoptic.json``; ``png_dir`` / ``json_name``
    change it (the app writes ``<name>_panoptic.png`` beside ``<name>_panoptic.json``).
    ``images`` / ``annotations``: records already in the set (``augment`` extends a dataset).
    """

    def __init__(
        self,
        root: str | Path,
        categories: Sequence[Category],
        *,
        info: dict[str, Any] | None = None,
        png_dir: str | Path | None = None,
        json_name: str = PANOPTIC_JSON,
        images: Sequence[dict[str, Any]] = (),
        annotations: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.root = Path(root)
        self.categories = list(categories)
        self.info = info
        self.png_dir = Path(png_dir) if png_dir is not None else self.root / PANOPTIC_DIR
        self.json_name = json_name
        self.images: list[dict[str, Any]] = list(images)
        self.annotations: list[dict[str, Any]] = list(annotations)
        self.instances: list[dict[str, Any]] | None = None
        self.png_dir.mkdir(parents=True, exist_ok=True)

    def add(
        self,
        image: dict[str, Any],
        ids: np.ndarray,
        segments: Sequence[dict[str, Any]],
        *,
        png_name: str | None = None,
        instances: Sequence[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Write one image's id map [H, W] and record it; ``image`` is its ``images`` entry (``id``,
        ``file_name``, ``height``, ``width``, ...). Segments get ``area``, ``bbox`` and ``iscrowd``
        where missing. ``instances``: COCO result records of this image (``image_id`` is added).
        Returns the annotation written."""
        png_name = png_name or f"{Path(image['file_name']).stem}.png"
        infos = []
        boxes = _boxes(ids) if any("bbox" not in s for s in segments) else {}
        for s in segments:
            s = dict(s)
            if "area" not in s or "bbox" not in s:
                if s["id"] in boxes:  # only the bounding box is scanned
                    sl = boxes[s["id"]]
                    m = ids[sl] == s["id"]
                    s.setdefault("area", int(m.sum()))
                    s.setdefault("bbox", _shift(bbox_xywh(m), sl))
                else:
                    m = ids == s["id"]
                    s.setdefault("area", int(m.sum()))
                    s.setdefault("bbox", bbox_xywh(m))
            s.setdefault("iscrowd", 0)
            infos.append(s)
        write_id_png(self.png_dir / png_name, ids)
        return self._record(image, png_name, infos, instances)

    def add_png(self, image: dict[str, Any], png: bytes, segments: Sequence[dict[str, Any]], *, png_name: str) -> dict[str, Any]:
        """:meth:`add` for an id map already encoded (:func:`encode_id_png`) whose segments carry
        ``area``, ``bbox`` and ``iscrowd``."""
        from modise.outputs import write_bytes_atomic

        write_bytes_atomic(self.png_dir / png_name, png)
        return self._record(image, png_name, list(segments), None)

    def _record(self, image: dict[str, Any], png_name: str, infos: list[dict[str, Any]],
                instances: Sequence[dict[str, Any]] | None) -> dict[str, Any]:
        ann = {"image_id": image["id"], "file_name": png_name, "segments_info": infos}
        self.images.append(image)
        self.annotations.append(ann)
        if instances is not None:
            self.instances = (self.instances or []) + [{"image_id": image["id"], **{k: v for k, v in r.items() if k != "image_id"}} for r in instances]
        return ann

    def to_json(self) -> dict[str, Any]:
        head = {"info": self.info} if self.info is not None else {}
        return {**head, "images": self.images, "annotations": self.annotations, "categories": [c.to_json() for c in self.categories]}

    def finish(self) -> dict[str, Any]:
        """Write ``panoptic.json`` (+ ``instances.json``); return the panoptic.json dict."""
        from modise.outputs import write_json_atomic

        data = self.to_json()
        write_json_atomic(self.root / self.json_name, data)
        if self.instances is not None:
            write_json_atomic(self.root / INSTANCES_JSON, self.instances)
        return data
