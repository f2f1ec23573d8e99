"""Lightning DataModule over a canonical panoptic dataset with fold K held out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from modise.errors import ModiseError

from .train_transforms import build_train_transform


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack same-size samples: ``images`` FloatTensor[B, 3, S, S] (grey x3) and Mask2Former targets."""
    images = torch.stack([b["image"] for b in batch]).expand(-1, 3, -1, -1).contiguous()
    targets = [{"labels": b["labels"].long(), "masks": b["masks"].float()} for b in batch]
    return {"images": images, "targets": targets, "image_ids": [int(b["image_id"]) for b in batch]}


class _Repeat(Dataset):
    """A tiny training set repeated so one epoch has at least ``min_len`` samples (less epoch overhead)."""

    def __init__(self, ds: Dataset, min_len: int) -> None:
        self.ds, self.n = ds, len(ds)
        self.times = max(1, -(-min_len // max(1, self.n)))

    def __len__(self) -> int:
        return self.n * self.times

    def __getitem__(self, i: int):
        return self.ds[i % self.n]


def split_fold(root: str | Path, fold: int | None) -> tuple[list[int], list[int]]:
    """(train ids, held-out ids) for ``fold`` of ``root/folds.json``; ``None`` trains on all."""
    from modise.data.dataset import load_folds
    from modise.data.panoptic import load_panoptic_json

    all_ids = [int(im["id"]) for im in load_panoptic_json(root)["images"]]
    if fold is None:
        return all_ids, []
    folds = load_folds(root)
    if not 0 <= fold < len(folds):
        raise ModiseError(f"{Path(root) / 'folds.json'}: fold {fold} requested but it defines {len(folds)} folds.")
    held = [int(i) for i in folds[fold]]
    held_set = set(held)
    return [i for i in all_ids if i not in held_set], held


class PanopticDataModule(L.LightningDataModule):
    """Training split with LSJ + intensity jitter; the held-out split resized/padded to ``image_size``."""

    def __init__(
        self,
        root: str | Path,
        fold: int | None,
        image_size: int = 512,
        batch_size: int = 2,
        num_workers: int | None = None,
        accelerator: str = "auto",
        devices: int | str = "auto",
        min_scale: float = 0.1,
        max_scale: float = 2.0,
        intensity: bool = True,
        seed: int = 0,
        min_epoch_len: int = 64,
    ) -> None:
        super().__init__()
        self.root, self.fold = Path(root), fold
        self.image_size, self.batch_size = image_size, batch_size
        self.on_gpu = _on_gpu(accelerator)
        self.num_workers = num_workers if num_workers is not None else default_workers(self.on_gpu, devices)
        self.aug = dict(min_scale=min_scale, max_scale=max_scale, intensity=intensity)
        self.seed, self.min_epoch_len = seed, min_epoch_len
        self.train_ids, self.val_ids = split_fold(self.root, fold)
        if not self.train_ids:
            raise ModiseError(f"{self.root}: no training images left after holding out fold {fold}.")

    def setup(self, stage: str | None = None) -> None:
        from modise.data.dataset import PanopticDataset

        rank = self.trainer.global_rank if self.trainer is not None else 0
        tf = build_train_transform(self.image_size, seed=self.seed * 1000 + rank, **self.aug)
        self.train_set = PanopticDataset(self.root, image_ids=self.train_ids, transform=tf)
        self.categories = self.train_set.categories

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            _Repeat(self.train_set, self.min_epoch_len),
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=len(self.train_set) >= self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,  # no worker start-up per epoch (tiny sets have short epochs)
            pin_memory=self.on_gpu,  # page-locked batches: the host-to-GPU copy overlaps the step
            collate_fn=collate,
        )


def _on_gpu(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def default_workers(on_gpu: bool, devices: int | str = "auto") -> int:
    """Loader workers when none are asked for: 0 on a CPU, where the model's step needs every core and a
    sample is cheap next to it; on GPUs, up to 8 per device from the cores there are, so reading,
    LSJ and mask building (about 1 s a full-size mammogram on one core) keep up with the step."""
    import os

    if not on_gpu:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n_dev = devices if isinstance(devices, int) and devices > 0 else max(1, torch.cuda.device_count())
    return max(1, min(8, cores // n_dev - 1))  # one core per device left for its training process
