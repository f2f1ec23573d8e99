"""Write a dataset in the canonical layout: images/, panoptic/, panoptic.json, folds.json, prepare_report.json.

Converters call :meth:`DatasetWriter.add` for each good image and :meth:`DatasetWriter.skip`
for each bad item (file, row, reason); the writer prints skips on the console, raises on the
first one under ``strict``, and writes everything into the staging folder that
:func:`modise.outputs.output_dir` moves into place.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.folds import patient_folds
from modise.data.panoptic import FOLDS_JSON, IMAGES_DIR, Category, PanopticFolderWriter, bbox_xywh, encode_id_png
from modise.errors import ModiseError
from modise.outputs import write_json_atomic
from modise.progress import stderr_console

REPORT_JSON = "prepare_report.json"


@dataclass
class EncodedImage:
    """One image of a dataset, encoded where it was read (in a converter's worker process, so that
    the PNG encoding runs on every core): the image file (PNG bytes, or a file to copy byte for byte),
    the RGB-coded panoptic PNG, its ``segments_info`` and its ``images`` record without id / file name."""

    stem: str
    suffix: str
    image_png: bytes | None
    copy_from: str | None
    panoptic_png: bytes
    segments: list[dict[str, Any]]
    hidden: int  # segments hidden by overlapping ones (dropped, warned about)
    record: dict[str, Any]


def encode_image(
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
) -> EncodedImage:
    """One image and its segments, encoded for :meth:`DatasetWriter.add_encoded`.

    ``pixels``: (H, W) uint8 written as PNG; or ``copy_from``: a JPEG/PNG copied byte
    for byte. ``segments``: (H, W) bool masks with category ids; overlaps go to the
    smaller segment (painted last) so a small lesion inside a large one survives.
    """
    import io

    from PIL import Image

    if (pixels is None) == (copy_from is None):
        raise ValueError("give exactly one of pixels / copy_from")
    image_png = None
    if copy_from is not None:
        suffix = Path(copy_from).suffix.lower()
        suffix = ".jpg" if suffix == ".jpeg" else suffix
    else:
        suffix, buf = ".png", io.BytesIO()
        Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
        image_png = buf.getvalue()
    ids = np.zeros((height, width), np.int32)
    order = sorted(range(len(segments)), key=lambda i: -int(segments[i][0].sum()))
    for seg_id, i in enumerate(order, start=1):
        ids[segments[i][0]] = seg_id
    infos, hidden = [], 0
    for seg_id, i in enumerate(order, start=1):
        m = ids == seg_id
        area = int(m.sum())
        if area == 0:
            hidden += 1
            continue
        infos.append({"id": seg_id, "category_id": int(segments[i][1]), "area": area, "bbox": bbox_xywh(m), "iscrowd": 0})
    record = {"height": int(height), "width": int(width), "patient_id": str(patient_id), "laterality": laterality,
              "view": view, "modality": modality, "source": source_file, **extra}
    return EncodedImage(stem, suffix, image_png, None if copy_from is None else str(copy_from), encode_id_png(ids), infos,
                        hidden, record)


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

    def add(self, stem: str, segments: Sequence[tuple[np.ndarray, int]], **kwargs: Any) -> int:
        """Write one image and its segments (see :func:`encode_image` for the arguments); returns the new image id."""
        return self.add_encoded(encode_image(stem, segments, **kwargs))

    def add_encoded(self, enc: "EncodedImage") -> int:
        """Write one image encoded by :func:`encode_image` (possibly in a worker process); returns its id."""
        unknown = sorted({s["category_id"] for s in enc.segments} - self.cat_ids)
        if unknown:
            raise ValueError(f"unknown category id {unknown[0]}")
        image_id = len(self.images) + 1
        file_name = self.unique_name(enc.stem, enc.suffix)
        if enc.copy_from is not None:
            shutil.copyfile(enc.copy_from, self.stage / IMAGES_DIR / file_name)
        else:
            (self.stage / IMAGES_DIR / file_name).write_bytes(enc.image_png)
        for _ in range(enc.hidden):
            self.warn(f"{enc.record.get('source') or enc.stem}: a segment is hidden by overlapping ones and was dropped.")
        self.panoptic.add_png({"id": image_id, "file_name": file_name, **enc.record}, enc.panoptic_png, enc.segments,
                              png_name=Path(file_name).with_suffix(".png").name)
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
