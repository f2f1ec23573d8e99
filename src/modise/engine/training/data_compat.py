"""The dataset contract (``modise.data.dataset``), with a thin stand-in while that module is absent.

``PanopticDataset(root, image_ids=None, transform=None)[i]`` -> dict(image [1,H,W] float,
masks [n,H,W] bool, labels [n] (0..K-1), segment_ids [n], image_id, file_name, meta);
``load_folds(root)``, ``load_categories(root)``. The data part owns the real one.
"""

from __future__ import annotations

try:  # the data part's implementation
    from modise.data.dataset import PanopticDataset, load_categories, load_folds  # noqa: F401
except ImportError:  # pragma: no cover - stand-in until the data part lands
    import json
    from pathlib import Path

    import numpy as np
    import torch

    from modise.data.imageio import read_image
    from modise.data.panoptic import FOLDS_JSON, IMAGES_DIR, PANOPTIC_DIR, Category, load_panoptic_json, read_id_png
    from modise.errors import ModiseError

    def load_categories(root) -> list[Category]:
        return [Category.from_json(c) for c in load_panoptic_json(root)["categories"]]

    def load_folds(root) -> list[list[int]]:
        path = Path(root) / FOLDS_JSON
        if not path.is_file():
            raise ModiseError(f"{path}: not found; prepare the dataset with folds.")
        return [[int(i) for i in f] for f in json.loads(path.read_text())["folds"]]

    class PanopticDataset(torch.utils.data.Dataset):
        def __init__(self, root, image_ids=None, transform=None) -> None:
            self.root, self.transform = Path(root), transform
            data = load_panoptic_json(root)
            self.categories = [Category.from_json(c) for c in data["categories"]]
            self._label = {c.id: i for i, c in enumerate(self.categories)}
            anns = {a["image_id"]: a for a in data["annotations"]}
            images = {im["id"]: im for im in data["images"]}
            self.image_ids = list(image_ids) if image_ids is not None else list(images)
            self._items = [(images[i], anns.get(i)) for i in self.image_ids]

        def __len__(self) -> int:
            return len(self._items)

        def __getitem__(self, i: int) -> dict:
            im, ann = self._items[i]
            px = read_image(self.root / IMAGES_DIR / im["file_name"]).pixels
            segs = ann["segments_info"] if ann else []
            ids = read_id_png(self.root / PANOPTIC_DIR / ann["file_name"]) if ann else np.zeros(px.shape, np.int64)
            masks = np.stack([ids == s["id"] for s in segs]) if segs else np.zeros((0, *px.shape), bool)
            sample = {
                "image": torch.from_numpy(px)[None],
                "masks": torch.from_numpy(masks),
                "labels": torch.tensor([self._label[s["category_id"]] for s in segs], dtype=torch.long),
                "segment_ids": torch.tensor([s["id"] for s in segs], dtype=torch.long),
                "image_id": int(im["id"]),
                "file_name": im["file_name"],
                "meta": {k: v for k, v in im.items() if k not in ("id", "file_name")},
            }
            return self.transform(sample) if self.transform else sample
