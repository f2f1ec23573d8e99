"""``modise predict``: images in, canonical COCO-panoptic predictions (with scores) out.

Layout of ``O``: ``panoptic.json`` + ``panoptic/*.png`` (what ``modise evaluate --pred``
reads), ``instances.json`` (the model's top-100 instances per image as a COCO results list:
``image_id``, ``category_id``, ``score``, RLE ``segmentation``; masks may overlap; what
``evaluate`` computes AP on, as detectron2 does for Mask2Former), ``heatmaps/<name>_<class>.png`` (per-class probability x255), ``overlays/<name>.png``
(Fig. 2 views) and, with ``dicom_seg``, ``dicom_seg/<name>_seg.dcm`` per DICOM input.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.panoptic import PANOPTIC_JSON, PanopticFolderWriter
from modise.errors import ModiseError

from .inputs import discover_inputs, unique_stems

WRITE_AHEAD = 2  # batches computed ahead of the writer thread


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

    The model is built once (:class:`~modise.pipeline.ModisePipeline`), images go to the device
    ``batch_size`` at a time, and one writer thread writes each batch's PNG / JSON / overlays /
    DICOM SEG while the next batch is computed (at most ``WRITE_AHEAD`` batches wait for it).
    ``data`` + ``fold``: predict the images of fold K of ``data/folds.json`` (added to ``inputs``)."""
    from modise.data.imageio import read_image
    from modise.data.writer import progress as track
    from modise.outputs import check_output_dir, output_dir, write_json_atomic
    from modise.pipeline import ModisePipeline

    sources = [checkpoint, *(inputs or []), *([data] if data is not None else [])]
    check_output_dir(out, overwrite, sources)
    if not inputs and fold is None:
        raise ModiseError("Nothing to predict: give --input FILES/FOLDERS or --data DATASET --fold K.")
    if batch_size < 1:
        raise ModiseError(f"--batch-size must be at least 1, not {batch_size}.")
    paths = discover_inputs([*(inputs or []), *fold_inputs(data, fold)])
    pipe = ModisePipeline.from_pretrained(checkpoint, device=device, object_mask_threshold=object_mask_threshold)
    cats = pipe.categories
    known_ids = _dataset_ids(paths)
    next_id = max(known_ids.values(), default=0) + 1
    names = unique_stems(paths)
    errors: list[dict[str, str]] = []
    n_segments = 0
    with output_dir(out, overwrite, sources) as stage:
        info = {"description": "modise predictions", "checkpoint": str(checkpoint), **pipe.settings()}
        results_out = PanopticFolderWriter(stage, cats, info=info)
        for sub in (*(["heatmaps"] if heatmaps else []), *(["overlays"] if overlays else []), *(["dicom_seg"] if dicom_seg else [])):
            (stage / sub).mkdir()

        def write(item: tuple[Path, str, Any, int], res: Any) -> None:  # runs on the writer thread
            path, name, im, image_id = item
            ann = res.write(results_out, {"id": image_id, "file_name": path.name, "source": str(path)},
                            png_name=f"{name}.png", instances=instances)
            if heatmaps:
                write_heatmaps(stage / "heatmaps", name, res.sem_seg, cats)
            if overlays:
                from modise.viz.overlays import figure2

                figure2(im.pixels, res, cats).save(stage / "overlays" / f"{name}.png")
            if dicom_seg and im.is_dicom:
                from .dicom_seg import write_dicom_seg

                segs = ann["segments_info"]
                by_class = np.stack([np.isin(res.ids, [s["id"] for s in segs if s["category_id"] == c.id]) for c in cats])
                try:
                    write_dicom_seg(stage / "dicom_seg" / f"{name}_seg.dcm", im.dataset, by_class, cats)
                except Exception as e:  # highdicom rejects some sources (e.g. missing UIDs)
                    errors.append({"input": str(path), "error": f"DICOM SEG not written: {type(e).__name__}: {e}"})

        pending: list[tuple[Path, str, Any, int]] = []
        writes: deque[Future] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="modise-predict-writer") as pool:

            def flush() -> None:
                nonlocal n_segments
                if not pending:
                    return
                results = pipe([im.pixels for _, _, im, _ in pending])
                n_segments += sum(len(r.segments_info) for r in results)
                while len(writes) >= WRITE_AHEAD:  # bounded: at most WRITE_AHEAD batches of results in memory
                    writes.popleft().result()
                writes.append(pool.submit(lambda batch: [write(*b) for b in batch], list(zip(pending, results))))
                pending.clear()

            for path, name in track(list(zip(paths, names)), "predicting", enabled=progress):
                try:
                    im = read_image(path)
                except ModiseError as e:
                    errors.append({"input": str(path), "error": str(e)})  # named once, at the end (exit 3)
                    continue
                image_id = known_ids.get(path)
                if image_id is None:
                    image_id, next_id = next_id, next_id + 1
                pending.append((path, name, im, image_id))
                if len(pending) >= batch_size:
                    flush()
            flush()
            while writes:  # re-raise a writer failure here, on the main thread
                writes.popleft().result()
        if not results_out.images:
            raise ModiseError(f"None of the {len(paths)} inputs could be read (first: {errors[0]['error']}).")
        results_out.finish()
        summary = {"out": str(Path(out)), "images": len(results_out.images), "segments": n_segments, "errors": errors}
        write_json_atomic(stage / "summary.json", summary)
    return summary


def write_heatmaps(folder: Path, name: str, sem_seg: np.ndarray, categories: Sequence[Any]) -> None:
    """``folder/<name>_<class>.png``: per-class probability [K, H, W] x 255 as 8-bit grey."""
    from PIL import Image

    for k, cat in enumerate(categories):
        Image.fromarray(np.clip(np.rint(sem_seg[k] * 255), 0, 255).astype(np.uint8)).save(
            folder / f"{name}_{_safe(cat.name)}.png", compress_level=1
        )


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
