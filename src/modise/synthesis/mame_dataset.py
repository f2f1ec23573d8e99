"""The training data of ``modise mame train``: a ``metadata.jsonl`` folder from ``modise mame prepare``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from modise.errors import ModiseError


class PromptImageFolder(Dataset):
    """A ``metadata.jsonl`` folder (from ``modise mame prepare``): image in [-1, 1], token ids, mask.

    Item: ``pixels`` FloatTensor[3, S, S], ``input_ids`` LongTensor[77], and for inpainting
    ``mask`` FloatTensor[1, S, S] (1 = inpaint).
    """

    def __init__(self, root: str | Path, tokenizer: Any, resolution: int = 512, inpainting: bool = False) -> None:
        self.root, self.resolution, self.inpainting = Path(root), resolution, inpainting
        meta = self.root / "metadata.jsonl"
        if not meta.is_file():
            raise ModiseError(f"{meta}: not found; run `modise mame prepare` first.")
        self.records = []
        for i, line in enumerate(meta.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                rec["file_name"], rec["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ModiseError(f"{meta} line {i}: needs JSON with file_name and text.") from None
            if inpainting and "mask_file_name" not in rec:
                raise ModiseError(f"{meta} line {i}: no mask_file_name; prepare with --inpainting.")
            self.records.append(rec)
        if not self.records:
            raise ModiseError(f"{meta}: no images listed.")
        ids = tokenizer([r["text"] for r in self.records], padding="max_length", truncation=True,
                        max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
        self.input_ids = ids

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, name: str, mode: str) -> np.ndarray:
        from PIL import Image

        with Image.open(self.root / name) as im:
            im = im.convert(mode)
            if im.size != (self.resolution, self.resolution):
                im = im.resize((self.resolution, self.resolution), Image.BILINEAR if mode == "L" else Image.NEAREST)
            return np.asarray(im, np.float32) / 255.0

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rec = self.records[i]
        grey = torch.from_numpy(self._load(rec["file_name"], "L"))
        item = {"pixels": (grey * 2 - 1)[None].expand(3, -1, -1).contiguous(), "input_ids": self.input_ids[i]}
        if self.inpainting:
            item["mask"] = (torch.from_numpy(self._load(rec["mask_file_name"], "L")) > 0.5).float()[None]
        return item
