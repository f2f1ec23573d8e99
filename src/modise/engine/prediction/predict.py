"""``modise predict``: images in, canonical COCO-panoptic predictions (with scores) out.

Layout of ``O``: ``panoptic.json`` + ``panoptic/*.png`` (what ``modise evaluate --pred``
reads), ``instances.json`` (the model's top-100 instances per image as a COCO results list:
``image_id``, ``category_id``, ``score``, RLE ``segmentation``; masks may overlap; what
``evaluate`` computes AP on, as detectron2 does for Mask2Former), ``heatmaps/<name>_<class>.png`` (per-class probability x255), ``overlays/<name>.png``
(Fig. 2 views) and, with ``dicom_seg``, ``dicom_seg/<name>_seg.dcm`` per DICOM input (with ``dicom_sr``
also ``dicom_sr/<name>_sr.dcm``), their UIDs derived from the model fingerprint (:mod:`modise.dicom`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from modise.errors import ModiseError

from .inputs import InputItem, collect_inputs

WRITE_AHEAD = 2  # batches computed ahead of the writer thread


def predict_files(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    dicom_seg: bool = False,
    dicom_sr: bool = False,
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
    shard: Sequence[InputItem] | None = None,
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
    ``shard``: the items this process predicts (instead of ``inputs`` / ``data``), without merging
    (:func:`modise.engine.prediction.distributed.predict_distributed` does). ``dicom_sr`` (a TID 1500
    report per DICOM input, referencing its SEG) implies ``dicom_seg``."""
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
    items = collect_inputs(inputs, data, fold) if shard is None else list(shard)
    pipe = ModisePipeline.from_pretrained(checkpoint, device=device, object_mask_threshold=object_mask_threshold)
    if shard is None:
        prepare_out(out, overwrite, resume, sources)
    cats = pipe.categories
    dicom_seg = dicom_seg or dicom_sr
    fingerprint = dicom_fingerprint(checkpoint, pipe) if dicom_seg else ""
    done_before = [it.name for it in items if resume and record_path(Path(out), it.name).is_file()]
    skip = set(done_before)
    errors: list[dict[str, str]] = []
    n_done = n_failed = 0
    stage = Path(out)
    for sub in ("records", *(["heatmaps"] if heatmaps else []), *(["overlays"] if overlays else []),
                *(["dicom_seg"] if dicom_seg else []), *(["dicom_sr"] if dicom_sr else [])):
        (stage / sub).mkdir(parents=True, exist_ok=True)
    pending: list[tuple[InputItem, Any]] = []
    writes: deque[Future] = deque()
    with _writer_pool(workers) as pool:

        def flush() -> None:
            if not pending:
                return
            results = pipe([im.pixels for _, im in pending], compact=not full_heatmaps)
            while len(writes) >= WRITE_AHEAD * max(batch_size, workers):  # bounded memory: results waiting
                _collect(writes.popleft(), errors)
            for (item, im), res in zip(pending, results):
                job = ImageJob(stage, item.name, item.path, item.image_id, _compact_ids(res), im.pixels,
                               im.dataset if im.is_dicom else None, cats, heatmaps, overlays, dicom_seg, instances,
                               dicom_sr, fingerprint)
                writes.append(pool.submit(write_image, job))
            pending.clear()

        for item in track(items, "predicting", enabled=progress):
            if item.name in skip:
                continue
            try:
                im = read_image(item.path)
            except ModiseError as e:
                errors.append({"input": str(item.path), "error": str(e)})  # named once, at the end (exit 3)
                n_failed += 1
                continue
            pending.append((item, im))
            n_done += 1
            if len(pending) >= batch_size:
                flush()
        flush()
        while writes:  # re-raise a writer failure here, on the main thread
            _collect(writes.popleft(), errors)
    counts = {"done": n_done, "skipped": len(done_before), "failed": n_failed}  # failed: unreadable inputs
    if shard is not None:
        return {**counts, "errors": errors}
    return finish_predictions(stage, items, cats, prediction_info(checkpoint, pipe), counts, errors)


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


def dicom_fingerprint(checkpoint: str | Path, pipe: Any) -> str:
    """The model fingerprint the SEG/SR UIDs derive from: the run's model files and the inference settings
    the images are predicted with (computed once per predict)."""
    from modise.dicom.uids import model_fingerprint

    return model_fingerprint(checkpoint, pipe.settings().record())


def prediction_info(checkpoint: str | Path, pipe: Any) -> dict[str, Any]:
    """``panoptic.json``'s ``info``: the checkpoint and the inference settings the images were predicted with."""
    return {"description": "modise predictions", "checkpoint": str(checkpoint), **pipe.settings().record()}


def finish_predictions(out: Path, items: Sequence[InputItem], cats: Sequence[Any], info: dict[str, Any],
                       counts: dict[str, int], errors: list[dict[str, str]]) -> dict[str, Any]:
    """Merge the records into ``panoptic.json`` / ``instances.json`` and write ``summary.json``."""
    from modise.outputs import write_json_atomic

    from .records import SUMMARY_JSON, merge_records

    next_id = max((it.image_id for it in items if it.image_id is not None), default=0) + 1
    merged, record_errors = merge_records(out, [it.name for it in items], cats, info, next_id)
    if not merged.images:
        from modise.outputs import remove_output_dir

        remove_output_dir(out)  # nothing written: leave no folder behind (only a folder modise marked as its own)
        first = f" (first: {errors[0]['error']})" if errors else ""
        raise ModiseError(f"None of the {len(items)} inputs could be read{first}.")
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
