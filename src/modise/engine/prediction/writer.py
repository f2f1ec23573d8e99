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

from modise.data.panoptic import PANOPTIC_JSON
from modise.errors import ModiseError

from .inputs import discover_inputs, unique_stems

WRITE_AHEAD = 2  # batches computed ahead of the writer thread


def dataset_ids(paths: Sequence[Path]) -> dict[Path, int]:
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
    workers: int = 1,
    resume: bool = False,
    full_heatmaps: bool = False,
    shard: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Predict every readable input; return a summary (``images``, ``segments``, ``done``, ``skipped``,
    ``failed``, ``errors``).

    The model is built once (:class:`~modise.pipeline.ModisePipeline`), images go to the device
    ``batch_size`` at a time, and ``workers`` writers (1: a thread; more: processes) write each image's
    PNG / heatmaps / overlay / DICOM SEG and then its record while the next batch is computed (at most
    ``WRITE_AHEAD`` batches wait for them). Files are written in place in ``out``, each atomically;
    ``resume`` skips the images whose record exists. ``panoptic.json`` / ``instances.json`` are merged from
    the records at the end. Heatmaps are at the inference resolution unless ``full_heatmaps``.
    ``data`` + ``fold``: predict the images of fold K of ``data/folds.json`` (added to ``inputs``).
    ``shard``: the indices (into the discovered inputs) this process predicts, without merging
    (:func:`modise.engine.prediction.distributed.predict_distributed` does)."""
    from modise.data.imageio import read_image
    from modise.progress import track
    from modise.outputs import check_output_dir
    from modise.pipeline import ModisePipeline

    from .records import ImageJob, record_path, write_image

    sources = [checkpoint, *(inputs or []), *([data] if data is not None else [])]
    if shard is None and not resume:
        check_output_dir(out, overwrite, sources, hint="pass --overwrite to replace it or --resume to continue it")
    if not inputs and fold is None:
        raise ModiseError("Nothing to predict: give --input FILES/FOLDERS or --data DATASET --fold K.")
    if batch_size < 1:
        raise ModiseError(f"--batch-size must be at least 1, not {batch_size}.")
    if workers < 1:
        raise ModiseError(f"--workers must be at least 1, not {workers}.")
    paths = discover_inputs([*(inputs or []), *fold_inputs(data, fold)])
    pipe = ModisePipeline.from_pretrained(checkpoint, device=device, object_mask_threshold=object_mask_threshold)
    names = unique_stems(paths)
    if shard is None:
        prepare_out(out, overwrite, resume, sources)
    cats = pipe.categories
    known_ids = dataset_ids(paths)
    todo = [(paths[i], names[i]) for i in (range(len(paths)) if shard is None else shard)]
    done_before = [n for _, n in todo if resume and record_path(Path(out), n).is_file()]
    skip = set(done_before)
    errors: list[dict[str, str]] = []
    n_done = n_failed = 0
    stage = Path(out)
    for sub in ("records", *(["heatmaps"] if heatmaps else []), *(["overlays"] if overlays else []),
                *(["dicom_seg"] if dicom_seg else [])):
        (stage / sub).mkdir(parents=True, exist_ok=True)
    pending: list[tuple[Path, str, Any]] = []
    writes: deque[Future] = deque()
    with _writer_pool(workers) as pool:

        def flush() -> None:
            if not pending:
                return
            results = pipe([im.pixels for _, _, im in pending], compact=not full_heatmaps)
            while len(writes) >= WRITE_AHEAD * max(batch_size, workers):  # bounded memory: results waiting
                _collect(writes.popleft(), errors)
            for (path, name, im), res in zip(pending, results):
                job = ImageJob(stage, name, path, known_ids.get(path), _compact_ids(res), im.pixels,
                               im.dataset if im.is_dicom else None, cats, heatmaps, overlays, dicom_seg, instances)
                writes.append(pool.submit(write_image, job))
            pending.clear()

        for path, name in track(todo, "predicting", enabled=progress):
            if name in skip:
                continue
            try:
                im = read_image(path)
            except ModiseError as e:
                errors.append({"input": str(path), "error": str(e)})  # named once, at the end (exit 3)
                n_failed += 1
                continue
            pending.append((path, name, im))
            n_done += 1
            if len(pending) >= batch_size:
                flush()
        flush()
        while writes:  # re-raise a writer failure here, on the main thread
            _collect(writes.popleft(), errors)
    counts = {"done": n_done, "skipped": len(done_before), "failed": n_failed}  # failed: unreadable inputs
    if shard is not None:
        return {**counts, "errors": errors}
    info = {"description": "modise predictions", "checkpoint": str(checkpoint), **pipe.settings()}
    return finish_predictions(stage, paths, names, cats, info, known_ids, counts, errors)


def prepare_out(out: str | Path, overwrite: bool, resume: bool, sources: Sequence[Any]) -> None:
    """Make ``out`` ready to be written in place: new, emptied (``overwrite``) or continued (``resume``)."""
    from modise.outputs import MARKER, check_output_dir, claim_output_dir, remove_output_dir

    from .records import RECORDS_DIR, clear_merged

    out = Path(out)
    if resume and out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file() or not (out / RECORDS_DIR).is_dir():
            raise ModiseError(f"Cannot resume into '{out}': it is not a modise predict folder (no {RECORDS_DIR}/).")
        check_output_dir(out, True, sources)
    else:
        check_output_dir(out, overwrite, sources, hint="pass --overwrite to replace it or --resume to continue it")
        if overwrite:
            remove_output_dir(out, sources)
    claim_output_dir(out, sources)
    clear_merged(out)


def finish_predictions(out: Path, paths: Sequence[Path], names: Sequence[str], cats: Sequence[Any], info: dict[str, Any],
                       known_ids: dict[Path, int], counts: dict[str, int], errors: list[dict[str, str]]) -> dict[str, Any]:
    """Merge the records into ``panoptic.json`` / ``instances.json`` and write ``summary.json``."""
    from modise.outputs import write_json_atomic

    from .records import SUMMARY_JSON, merge_records

    merged, record_errors = merge_records(out, names, cats, info, max(known_ids.values(), default=0) + 1)
    if not merged.images:
        from modise.outputs import remove_output_dir

        remove_output_dir(out)  # nothing written: leave no folder behind (only a folder modise marked as its own)
        first = f" (first: {errors[0]['error']})" if errors else ""
        raise ModiseError(f"None of the {len(paths)} inputs could be read{first}.")
    merged.finish()
    errors = [*errors, *(e for e in record_errors if e not in errors)]
    n_segments = sum(len(a["segments_info"]) for a in merged.annotations)
    summary = {"out": str(out), "images": len(merged.images), "segments": n_segments, **counts, "errors": errors}
    write_json_atomic(out / SUMMARY_JSON, summary)
    return summary


def _compact_ids(res: Any) -> Any:
    """The result with its id map in the smallest integer type (what travels to a writer process)."""
    import dataclasses

    ids = res.ids
    small = ids.astype(np.uint8 if ids.max(initial=0) < 256 else np.int32, copy=False)
    return dataclasses.replace(res, ids=small)


def _collect(future: Future, errors: list[dict[str, str]]) -> None:
    errors.extend(future.result()["errors"])


def _writer_pool(workers: int):
    """One writer thread, or ``workers`` processes (spawned: the parent holds threads and a model)."""
    if workers == 1:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="modise-predict-writer")
    import multiprocessing

    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


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
