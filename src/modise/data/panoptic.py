"""The canonical on-disk format: COCO panoptic (``panoptic.json`` + ``panoptic/*.png``).

Segment ids are encoded in PNG colour as ``id = R + 256*G + 256**2*B``; 0 is background
(unlabelled pixels are background, never void).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modise.errors import ModiseError

PANOPTIC_JSON = "panoptic.json"
PANOPTIC_DIR = "panoptic"
IMAGES_DIR = "images"
FOLDS_JSON = "folds.json"


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int64 segment ids."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) int -> (H, W, 3) uint8 colour encoding of segment ids."""
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, (ids // 256) % 256, (ids // 65536) % 256], axis=-1).astype(np.uint8)


def read_id_png(path: str | Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    return rgb2id(arr)


def write_id_png(path: str | Path, ids: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(id2rgb(ids)).save(path, optimize=False, compress_level=1)


def bbox_xywh(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


@dataclass
class Category:
    """A panoptic class; ``prompts`` are the text(s) the class head encodes (synonyms)."""

    id: int
    name: str
    isthing: int = 1
    prompts: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "isthing": self.isthing, "prompts": self.prompts or [self.name]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Category":
        return cls(id=int(d["id"]), name=str(d["name"]), isthing=int(d.get("isthing", 1)), prompts=list(d.get("prompts") or [d["name"]]))


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
