"""Read a canonical panoptic dataset back as a PyTorch dataset (image, instance masks, classes, metadata)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from modise.data.imageio import read_image
from modise.data.panoptic import FOLDS_JSON, IMAGES_DIR, PANOPTIC_DIR, Category, load_panoptic_json, read_id_png
from modise.errors import ModiseError


def load_categories(root: str | Path) -> list[Category]:
    """The dataset's categories in ``panoptic.json`` order (that order defines class index 0..K-1)."""
    return [Category.from_json(c) for c in load_panoptic_json(root)["categories"]]


def load_folds(root: str | Path) -> list[list[int]]:
    """``folds.json``'s folds: lists of image ids, each image in exactly one."""
    path = Path(root) / FOLDS_JSON
    if not path.is_file():
        raise ModiseError(f"{path}: not found; convert the data with `modise prepare ...` first.")
    try:
        data = json.loads(path.read_text())
        return [[int(i) for i in f] for f in data["folds"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ModiseError(f"{path}: not a valid folds file ({e}).") from None


def fold_image_ids(folds: list[list[int]], fold: int, root: str | Path) -> list[int]:
    """The image ids of fold ``fold`` with a clear error when it does not exist."""
    if not 0 <= fold < len(folds):
        raise ModiseError(f"--fold {fold}: {Path(root) / 'folds.json'} defines folds 0..{len(folds) - 1}.")
    return list(folds[fold])


class PanopticDataset(Dataset):
    """``ds[i]`` -> dict(image FloatTensor[1,H,W] in [0,1], ids the panoptic id map [H,W] (uint8 or
    int32), masks BoolTensor[n,H,W], labels LongTensor[n] (class index in ``categories`` order),
    segment_ids LongTensor[n], image_id int, file_name str, meta dict).

    ``transform`` (if given) maps that dict, without ``masks``, to a dict; the masks are then built from
    its ``ids`` unless it made them (so an augmentation transforms one id map, not a mask per segment).
    """

    def __init__(
        self,
        root: str | Path,
        image_ids: list[int] | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.root = Path(root)
        data = load_panoptic_json(self.root)
        self.categories = [Category.from_json(c) for c in data["categories"]]
        self.cat_index = {c.id: i for i, c in enumerate(self.categories)}
        self._images = {int(im["id"]): im for im in data["images"]}
        self._anns = {int(a["image_id"]): a for a in data["annotations"]}
        if image_ids is None:
            self.image_ids = sorted(self._images)
        else:
            missing = [i for i in image_ids if int(i) not in self._images]
            if missing:
                raise ModiseError(f"{self.root}: image id(s) {missing[:5]} are not in panoptic.json.")
            self.image_ids = [int(i) for i in image_ids]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image_id = self.image_ids[i]
        im = self._images[image_id]
        pixels = read_image(self.root / IMAGES_DIR / im["file_name"]).pixels
        ann = self._anns.get(image_id, {"segments_info": [], "file_name": Path(im["file_name"]).with_suffix(".png").name})
        ids = read_id_png(self.root / PANOPTIC_DIR / ann["file_name"], compact=True)
        if ids.shape != pixels.shape:
            raise ModiseError(f"{self.root / PANOPTIC_DIR / ann['file_name']}: size {ids.shape} differs from its image {pixels.shape}.")
        segs = [s for s in ann["segments_info"] if s["category_id"] in self.cat_index]
        meta = {k: v for k, v in im.items() if k not in ("id", "file_name")}
        sample = {
            "image": torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None],
            "ids": torch.from_numpy(ids),
            "labels": torch.tensor([self.cat_index[s["category_id"]] for s in segs], dtype=torch.long),
            "segment_ids": torch.tensor([s["id"] for s in segs], dtype=torch.long),
            "image_id": image_id,
            "file_name": im["file_name"],
            "meta": meta,
        }
        if self.transform is not None:
            sample = self.transform(sample)
        if "masks" not in sample:
            sample["masks"] = masks_from_ids(sample["ids"], sample["segment_ids"])
        return sample


def masks_from_ids(ids: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
    """[H, W] id map and (n,) segment ids -> BoolTensor[n, H, W] (a segment absent from the map: all False)."""
    return ids[None] == segment_ids.to(ids.device)[:, None, None]  # compared after type promotion: no id wraps
