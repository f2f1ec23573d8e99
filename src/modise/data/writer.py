"""Write a dataset in the canonical layout: images/, panoptic/, panoptic.json, folds.json, prepare_report.json.

Converters call :meth:`DatasetWriter.add` for each good image and :meth:`DatasetWriter.skip`
for each bad item (file, row, reason); the writer prints skips on the console, raises on the
first one under ``strict``, and writes everything into the staging folder that
:func:`modise.outputs.output_dir` moves into place.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.folds import patient_folds
from modise.data.panoptic import FOLDS_JSON, IMAGES_DIR, Category, PanopticFolderWriter, bbox_xywh
from modise.errors import ModiseError
from modise.outputs import write_json_atomic
from modise.progress import stderr_console

REPORT_JSON = "prepare_report.json"


class DatasetWriter:
    """Stage one dataset; ``add`` images with their instance masks, ``skip`` bad items, ``finish``."""

    def __init__(
        self,
        stage: str | Path,
        categories: Iterable[Category],
        source: str,
        strict: bool = False,
        quiet: bool = False,
    ) -> None:
        self.stage = Path(stage)
        self.categories = list(categories)
        self.cat_ids = {c.id for c in self.categories}
        self.source = source
        self.strict = strict
        self.quiet = quiet
        self.panoptic = PanopticFolderWriter(
            self.stage, self.categories, info={"description": f"modise canonical panoptic dataset from {source}"}
        )
        self.images, self.annotations = self.panoptic.images, self.panoptic.annotations  # the same lists
        self.skipped: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self._names: set[str] = set()
        self._t0 = time.perf_counter()
        (self.stage / IMAGES_DIR).mkdir(parents=True, exist_ok=True)

    def skip(self, file: str | Path, reason: str, row: int | None = None) -> None:
        """Record a skipped item; under ``strict`` stop the conversion with that sentence."""
        where = f"{file}" + (f" (row {row})" if row is not None else "")
        if self.strict:
            raise ModiseError(f"{where}: {reason} (--strict stops at the first problem).")
        self.skipped.append({"file": str(file), "row": row, "reason": reason})
        if not self.quiet:
            stderr_console().print(f"[yellow]skipped[/] {where}: {reason}")

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        if not self.quiet:
            stderr_console().print(f"[yellow]warning[/] {message}")

    def unique_name(self, stem: str, suffix: str) -> str:
        name, i = f"{stem}{suffix}", 1
        while name in self._names:
            name, i = f"{stem}_{i}{suffix}", i + 1
        self._names.add(name)
        return name

    def add(
        self,
        stem: str,
        segments: Sequence[tuple[np.ndarray, int]],
        *,
        pixels: np.ndarray | None = None,
        copy_from: str | Path | None = None,
        height: int,
        width: int,
        patient_id: str,
        laterality: str = "",
        view: str = "",
        modality: str = "",
        source_file: str = "",
        **extra: Any,
    ) -> int:
        """Write one image and its segments; returns the new image id.

        ``pixels``: (H, W) uint8 written as PNG; or ``copy_from``: a JPEG/PNG copied byte
        for byte. ``segments``: (H, W) bool masks with category ids; overlaps go to the
        smaller segment (painted last) so a small lesion inside a large one survives.
        """
        if (pixels is None) == (copy_from is None):
            raise ValueError("give exactly one of pixels / copy_from")
        image_id = len(self.images) + 1
        if copy_from is not None:
            suffix = Path(copy_from).suffix.lower()
            suffix = ".jpg" if suffix == ".jpeg" else suffix
            file_name = self.unique_name(stem, suffix)
            shutil.copyfile(copy_from, self.stage / IMAGES_DIR / file_name)
        else:
            from PIL import Image

            file_name = self.unique_name(stem, ".png")
            Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(self.stage / IMAGES_DIR / file_name, compress_level=1)
        ids = np.zeros((height, width), np.int32)
        order = sorted(range(len(segments)), key=lambda i: -int(segments[i][0].sum()))
        for seg_id, i in enumerate(order, start=1):
            mask, cat = segments[i]
            if cat not in self.cat_ids:
                raise ValueError(f"unknown category id {cat}")
            ids[mask] = seg_id
        infos = []
        for seg_id, i in enumerate(order, start=1):
            m = ids == seg_id
            area = int(m.sum())
            if area == 0:
                self.warn(f"{source_file or stem}: a segment is hidden by overlapping ones and was dropped.")
                continue
            infos.append({"id": seg_id, "category_id": int(segments[i][1]), "area": area, "bbox": bbox_xywh(m), "iscrowd": 0})
        self.panoptic.add(
            {
                "id": image_id,
                "file_name": file_name,
                "height": int(height),
                "width": int(width),
                "patient_id": str(patient_id),
                "laterality": laterality,
                "view": view,
                "modality": modality,
                "source": source_file,
                **extra,
            },
            ids,
            infos,
            png_name=Path(file_name).with_suffix(".png").name,
        )
        return image_id

    def finish(self, k: int = 5, seed: int = 0, **report_extra: Any) -> dict[str, Any]:
        """Write panoptic.json, folds.json and prepare_report.json; return the report."""
        if not self.images:
            raise ModiseError(f"No image could be converted ({len(self.skipped)} skipped); see the messages above.")
        self.panoptic.finish()
        labels = {a["image_id"]: {s["category_id"] for s in a["segments_info"]} for a in self.annotations}
        folds = patient_folds({im["id"]: im["patient_id"] for im in self.images}, labels, k=k, seed=seed)
        write_json_atomic(self.stage / FOLDS_JSON, {"k": len(folds), "seed": seed, "folds": folds})
        seconds = time.perf_counter() - self._t0
        names = {c.id: c.name for c in self.categories}
        counts = Counter(names[s["category_id"]] for a in self.annotations for s in a["segments_info"])
        report = {
            "source": self.source,
            "converted": len(self.images),
            "skipped_count": len(self.skipped),
            "skipped": self.skipped,
            "warnings": self.warnings,
            "segments_per_class": {c.name: counts.get(c.name, 0) for c in self.categories},
            "images_without_lesion": sum(1 for a in self.annotations if not a["segments_info"]),
            "patients": len({im["patient_id"] for im in self.images}),
            "folds": len(folds),
            "seconds": round(seconds, 3),
            "images_per_s": round(len(self.images) / seconds, 2) if seconds > 0 else None,
            **report_extra,
        }
        write_json_atomic(self.stage / REPORT_JSON, report)
        return report
