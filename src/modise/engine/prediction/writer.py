"""``modise predict``: images in, canonical COCO-panoptic predictions (with scores) out.

Layout of ``O``: ``panoptic.json`` + ``panoptic/*.png`` (what ``modise evaluate --pred``
reads), ``instances.json`` (the model's top-100 instances per image as a COCO results list:
``image_id``, ``category_id``, ``score``, RLE ``segmentation``; masks may overlap; what
``evaluate`` computes AP on, as detectron2 does for Mask2Former), ``heatmaps/<name>_<class>.png`` (per-class probability x255), ``overlays/<name>.png``
(Fig. 2 views) and, with ``dicom_seg``, ``dicom_seg/<name>.dcm`` per DICOM input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.panoptic import PANOPTIC_JSON, PanopticFolderWriter, panoptic_record
from modise.errors import ModiseError

from .inputs import discover_inputs, unique_stems
from .predictor import Predictor


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
    instances: bool = True,
    data: str | Path | None = None,
    fold: int | None = None,
) -> dict[str, Any]:
    """Predict every readable input; return a summary (``images``, ``segments``, ``errors``).

    ``data`` + ``fold``: predict the images of fold K of ``data/folds.json`` (added to ``inputs``)."""
    from modise.data.imageio import read_image
    from modise.data.writer import progress as track
    from modise.engine.evaluation.instances import instance_records
    from modise.outputs import check_output_dir, output_dir, write_json_atomic

    sources = [checkpoint, *(inputs or []), *([data] if data is not None else [])]
    check_output_dir(out, overwrite, sources)
    if not inputs and fold is None:
        raise ModiseError("Nothing to predict: give --input FILES/FOLDERS or --data DATASET --fold K.")
    paths = discover_inputs([*(inputs or []), *fold_inputs(data, fold)])
    predictor = Predictor.from_run(checkpoint, device=device, object_mask_threshold=object_mask_threshold)
    cats = predictor.categories
    known_ids = _dataset_ids(paths)
    next_id = max(known_ids.values(), default=0) + 1
    names = unique_stems(paths)
    errors: list[dict[str, str]] = []
    n_segments = 0
    with output_dir(out, overwrite, sources) as stage:
        results_out = PanopticFolderWriter(stage, cats, info={"description": "modise predictions", "checkpoint": str(checkpoint)})
        for sub in (*(["heatmaps"] if heatmaps else []), *(["overlays"] if overlays else []), *(["dicom_seg"] if dicom_seg else [])):
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
                n_segments += len(segments)
                h, w = ids.shape
                results_out.add({"id": image_id, "file_name": path.name, "height": h, "width": w, "source": str(path)}, ids, segments,
                                png_name=f"{name}.png", instances=instance_records(res, cats) if instances else None)
                sem = res["sem_seg"]
                sem = np.asarray(sem.float().cpu() if hasattr(sem, "cpu") else sem)
                if heatmaps:
                    from PIL import Image

                    for k, cat in enumerate(cats):
                        Image.fromarray(np.clip(np.rint(sem[k] * 255), 0, 255).astype(np.uint8)).save(
                            stage / "heatmaps" / f"{name}_{_safe(cat.name)}.png", compress_level=1
                        )
                if overlays:
                    from modise.viz.overlays import figure2

                    figure2(im.pixels, res, cats).save(stage / "overlays" / f"{name}.png")
                if dicom_seg and im.is_dicom:
                    from .dicom_seg import write_dicom_seg

                    by_class = np.stack([np.isin(ids, [s["id"] for s in segments if s["category_id"] == c.id]) for c in cats])
                    try:
                        write_dicom_seg(stage / "dicom_seg" / f"{name}.dcm", im.dataset, by_class, cats)
                    except Exception as e:  # highdicom rejects some sources (e.g. missing UIDs)
                        errors.append({"input": str(path), "error": f"DICOM SEG not written: {type(e).__name__}: {e}"})
            pending.clear()

        for path, name in track(list(zip(paths, names)), "predicting", enabled=progress):
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
        if not results_out.images:
            raise ModiseError(f"None of the {len(paths)} inputs could be read (first: {errors[0]['error']}).")
        results_out.finish()
        summary = {"out": str(Path(out)), "images": len(results_out.images), "segments": n_segments, "errors": errors}
        write_json_atomic(stage / "summary.json", summary)
    return summary


def fold_inputs(data: str | Path | None, fold: int | None) -> list[Path]:
    """The image files of fold ``fold`` of dataset ``data`` (none without ``fold``)."""
    if fold is None:
        if data is not None:
            raise ModiseError("--data needs --fold K (which fold's images to predict).")
        return []
    if data is None:
        raise ModiseError("--fold needs --data (the dataset whose folds.json names the images).")
    from modise.data.dataset import fold_image_ids, load_folds
    from modise.data.panoptic import IMAGES_DIR, load_panoptic_json

    data = Path(data)
    ids = set(fold_image_ids(load_folds(data), fold, data))
    files = {im["id"]: im["file_name"] for im in load_panoptic_json(data)["images"]}
    missing = sorted(ids - set(files))
    if missing:
        raise ModiseError(f"{data / 'folds.json'}: fold {fold} lists image id {missing[0]}, which {data / 'panoptic.json'} does not.")
    return [data / IMAGES_DIR / files[i] for i in sorted(ids)]


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
