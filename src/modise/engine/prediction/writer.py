"""``modise predict``: images in, canonical COCO-panoptic predictions (with scores) out.

Layout of ``O``: ``panoptic.json`` + ``panoptic/*.png`` (what ``modise evaluate --pred``
reads), ``heatmaps/<name>_<class>.png`` (per-class probability x255), ``overlays/<name>.png``
(Fig. 2 views) and, with ``dicom_seg``, ``dicom_seg/<name>.dcm`` per DICOM input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.panoptic import PANOPTIC_DIR, PANOPTIC_JSON, bbox_xywh, write_id_png
from modise.errors import ModiseError

from .inputs import discover_inputs, unique_stems
from .predictor import Predictor, panoptic_record


def _dataset_ids(paths: Sequence[Path]) -> dict[Path, int]:
    """Reuse image ids where inputs live in a prepared dataset (``<root>/images/<file>``), so
    predictions line up with that dataset's ground truth in ``modise evaluate``."""
    ids: dict[Path, int] = {}
    roots: dict[Path, dict[str, int]] = {}
    for p in paths:
        root = p.resolve().parent.parent
        if root not in roots:
            try:
                data = json.loads((root / PANOPTIC_JSON).read_text())
                roots[root] = {str(im["file_name"]): int(im["id"]) for im in data["images"]}
            except (OSError, ValueError, KeyError, TypeError):
                roots[root] = {}
        rel = p.resolve().relative_to(root).as_posix()
        hit = roots[root].get(p.name, roots[root].get(rel))
        if hit is not None:
            ids[p] = hit
    return ids


def predict_files(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    dicom_seg: bool = False,
    batch_size: int = 1,
    overwrite: bool = False,
    overlays: bool = True,
    heatmaps: bool = True,
    device: str | None = None,
    progress: bool = True,
    object_mask_threshold: float | None = None,
) -> dict[str, Any]:
    """Predict every readable input; return a summary (``images``, ``segments``, ``errors``)."""
    from modise.data.imageio import read_image
    from modise.outputs import check_output_dir, output_dir, write_json_atomic

    check_output_dir(out, overwrite, [checkpoint, *inputs])
    paths = discover_inputs(inputs)
    predictor = Predictor.from_run(checkpoint, device=device, object_mask_threshold=object_mask_threshold)
    cats = predictor.categories
    known_ids = _dataset_ids(paths)
    next_id = max(known_ids.values(), default=0) + 1
    names = unique_stems(paths)
    images, annotations, errors = [], [], []
    n_segments = 0
    with output_dir(out, overwrite, [checkpoint, *inputs]) as stage:
        for sub in (PANOPTIC_DIR, *(["heatmaps"] if heatmaps else []), *(["overlays"] if overlays else []), *(["dicom_seg"] if dicom_seg else [])):
            (stage / sub).mkdir()
        pending: list[tuple[Path, str, Any]] = []

        def flush() -> None:
            nonlocal next_id, n_segments
            if not pending:
                return
            results = predictor([im.pixels for _, _, im in pending])
            for (path, name, im), res in zip(pending, results):
                image_id = known_ids.get(path)
                if image_id is None:
                    image_id, next_id = next_id, next_id + 1
                ids, segments = panoptic_record(res)
                for s in segments:
                    s["bbox"] = bbox_xywh(ids == s["id"])
                    s["iscrowd"] = 0
                n_segments += len(segments)
                h, w = ids.shape
                write_id_png(stage / PANOPTIC_DIR / f"{name}.png", ids)
                images.append({"id": image_id, "file_name": path.name, "height": h, "width": w, "source": str(path)})
                annotations.append({"image_id": image_id, "file_name": f"{name}.png", "segments_info": segments})
                sem = res["sem_seg"]
                sem = np.asarray(sem.float().cpu() if hasattr(sem, "cpu") else sem)
                if heatmaps:
                    from PIL import Image

                    for k, cat in enumerate(cats):
                        Image.fromarray(np.clip(np.rint(sem[k] * 255), 0, 255).astype(np.uint8)).save(
                            stage / "heatmaps" / f"{name}_{_safe(cat.name)}.png", compress_level=1
                        )
                if overlays:
                    from .overlays import figure2

                    figure2(im.pixels, res, cats).save(stage / "overlays" / f"{name}.png")
                if dicom_seg and im.is_dicom:
                    from .dicom_seg import write_dicom_seg

                    by_class = np.stack([np.isin(ids, [s["id"] for s in segments if s["category_id"] == c.id]) for c in cats])
                    try:
                        write_dicom_seg(stage / "dicom_seg" / f"{name}.dcm", im.dataset, by_class, cats)
                    except Exception as e:  # highdicom rejects some sources (e.g. missing UIDs)
                        errors.append({"input": str(path), "error": f"DICOM SEG not written: {type(e).__name__}: {e}"})
            pending.clear()

        from .predictor import _track

        for path, name in _track(list(zip(paths, names)), progress, "predicting"):
            try:
                im = read_image(path)
            except ModiseError as e:
                errors.append({"input": str(path), "error": str(e)})
                print(f"warning: skipped {e}", file=sys.stderr)
                continue
            pending.append((path, name, im))
            if len(pending) >= batch_size:
                flush()
        flush()
        if not images:
            raise ModiseError(f"None of the {len(paths)} inputs could be read (first: {errors[0]['error']}).")
        write_json_atomic(stage / PANOPTIC_JSON, {
            "info": {"description": "modise predictions", "checkpoint": str(checkpoint)},
            "images": images, "annotations": annotations, "categories": [c.to_json() for c in cats],
        })
        summary = {"out": str(Path(out)), "images": len(images), "segments": n_segments, "errors": errors}
        write_json_atomic(stage / "summary.json", summary)
    return summary


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
