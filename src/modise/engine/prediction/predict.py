"""``modise predict``: images in, canonical COCO-panoptic predictions (with scores) out.

Layout of ``O``: ``panoptic.json`` + ``panoptic/*.png`` (what ``modise evaluate --pred``
reads), ``instances.json`` (the model's top-100 instances per image as a COCO results list:
``image_id``, ``category_id``, ``score``, RLE ``segmentation``; masks may overlap; what
``evaluate`` computes AP on, as detectron2 does for Mask2Former), ``heatmaps/<name>_<class>.png`` (per-class probability x255), ``overlays/<name>.png``
(Fig. 2 views) and, with ``dicom_seg``, ``dicom_seg/<name>_seg.dcm`` per DICOM input (with ``dicom_sr``
also ``dicom_sr/<name>_sr.dcm``), their UIDs derived from the model fingerprint (:mod:`modise.dicom`).

An input may be a DICOMweb server (``http://HOST/dicom-web`` with ``query`` filters): its MG / DX
instances are retrieved one at a time by WADO-RS (read ahead of the model by ``READ_AHEAD``), predicted
like files (named by SOP Instance UID, DICOM SEG and SR on), and with ``store`` each image's SEG and SR go back
by STOW-RS (``store.py``) as soon as they are written.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from modise.errors import ModiseError

from .inputs import InputItem, SkippedInput, collect_inputs, collect_remote, read_item

WRITE_AHEAD = 2  # batches computed ahead of the writer thread
READ_AHEAD = 2  # DICOMweb instances retrieved ahead of the model (each one whole in memory)


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
    query: Mapping[str, str] | Sequence[str] | None = None,
    store: bool = False,
    store_url: str | None = None,
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
    (:func:`modise.engine.prediction.distributed.predict_distributed` does).
    A DICOMweb URL as the one input: ``query`` (``KEY=VALUE`` strings or a dict) picks its studies; the
    summary adds ``server``, ``skipped_instances`` (by reason) and, with ``store``, ``stored`` (STOW-RS to
    that server or to ``store_url``); SEG and SR are on for it. ``dicom_sr`` (a TID 1500 report per DICOM
    input, referencing its SEG) implies ``dicom_seg``."""
    from modise.progress import track
    from modise.outputs import check_output_dir
    from modise.pipeline import ModisePipeline

    from .records import ImageJob, record_path, write_image

    remote = remote_options(inputs, query, store, store_url)
    if remote is not None:
        dicom_seg = dicom_sr = True  # a PACS study's results go back as DICOM SEG and SR
    sources = [checkpoint, *(inputs or []), *([data] if data is not None else [])]
    if shard is None and not resume:
        check_output_dir(out, overwrite, sources, hint="pass --overwrite to replace it or --resume to continue it")
    if not inputs and fold is None:
        raise ModiseError("Nothing to predict: give --input FILES/FOLDERS or --data DATASET --fold K.")
    if batch_size < 1:
        raise ModiseError(f"--batch-size must be at least 1, not {batch_size}.")
    if workers < 1:
        raise ModiseError(f"--workers must be at least 1, not {workers}.")
    skipped_instances: Counter = Counter()
    if shard is not None:
        items = list(shard)
    elif remote is not None and remote["url"] is not None:
        items, skipped_instances = collect_remote(remote["url"], remote["query"])
    else:
        items = collect_inputs(inputs, data, fold)
    from .store import StoreTarget, store_image, stored_mark, write_and_store

    target = StoreTarget(remote["store_url"]) if remote is not None and remote["store_url"] else None
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
    stored: list[str] = []
    if target is not None:  # a killed run's images written but not yet sent go now (their UIDs are the same)
        for item in items:
            if item.name in skip and not stored_mark(Path(out), item.name).is_file():
                sent = store_image(Path(out), item.name, target, _what(item), _label(item))
                stored += sent["stored"]
                errors += sent["errors"]
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
                _collect(writes.popleft(), errors, stored)
            for (item, im), res in zip(pending, results):
                job = ImageJob(stage, item.name, item.path, item.image_id, _compact_ids(res), im.pixels,
                               im.dataset if im.is_dicom else None, cats, heatmaps, overlays, dicom_seg, instances,
                               dicom_sr, fingerprint)
                if target is None:
                    writes.append(pool.submit(write_image, job))
                else:
                    writes.append(pool.submit(write_and_store, job, target, _what(item), _label(item)))
            pending.clear()

        todo = [item for item in items if item.name not in skip]
        reads = _reads(todo, READ_AHEAD if any(it.remote is not None for it in todo) else 0)
        for item in track(todo, "predicting", enabled=progress):
            _, read = next(reads)
            try:
                im = read()
            except SkippedInput as e:  # retrieved, then found not to be an image modise predicts
                skipped_instances[e.reason] += 1
                continue
            except ModiseError as e:
                errors.append({"input": _label(item), "error": str(e)})  # named once, at the end (exit 3)
                n_failed += 1
                continue
            pending.append((item, im))
            n_done += 1
            if len(pending) >= batch_size:
                flush()
        flush()
        while writes:  # re-raise a writer failure here, on the main thread
            _collect(writes.popleft(), errors, stored)
    counts: dict[str, Any] = {"done": n_done, "skipped": len(done_before), "failed": n_failed}  # failed: unreadable inputs
    if remote is not None and remote["url"] is not None:
        from modise.dicom.dicomweb import display_url

        counts = {"server": display_url(remote["url"]), **counts, "skipped_instances": dict(sorted(skipped_instances.items()))}
    if target is not None:
        counts["stored"] = len(stored)
    if shard is not None:
        return {**counts, "errors": errors}
    return finish_predictions(stage, items, cats, prediction_info(checkpoint, pipe), counts, errors)


def remote_options(inputs: Sequence[str | Path] | None, query: Mapping[str, str] | Sequence[str] | None, store: bool,
                   store_url: str | None) -> dict[str, Any] | None:
    """The DICOMweb side of a predict call, checked before anything is read or written: ``url`` (the one
    ``--input`` that is a server), ``query`` (filters), ``store_url`` (where ``--store`` sends, or ``None``).
    ``None`` when nothing is remote. UsageError (exit 2) for combinations that cannot work."""
    from modise.dicom.dicomweb import check_url, is_url, parse_queries
    from modise.errors import UsageError

    urls = [str(i) for i in inputs or [] if is_url(i)]
    if len(urls) > 1 or (urls and len(urls) != len(inputs or [])):
        raise UsageError("--input", "a DICOMweb URL is the only --input of a run (one server; files and folders in another run).")
    if query and not urls:
        raise UsageError("--query", "filters a DICOMweb server's studies: give the server as --input http://HOST/dicom-web.")
    if urls and not query:
        raise UsageError("--query", "a DICOMweb --input needs --query KEY=VALUE (e.g. StudyInstanceUID=...), not the whole archive.")
    if store_url and not store:
        raise UsageError("--store-url", "needs --store (nothing is stored without it).")
    if store and not urls and not store_url:
        raise UsageError("--store", "sends results to the DICOMweb server of --input, or to --store-url.")
    if not urls and not store:
        return None
    url = check_url(urls[0]) if urls else None
    filters = dict(query) if isinstance(query, Mapping) else parse_queries(query)
    dest = check_url(store_url, "--store-url") if store_url else url
    return {"url": url, "query": filters, "store_url": dest if store else None}


def _label(item: InputItem) -> str:
    """How errors name an input: its path, or for a DICOMweb instance its SOP Instance UID (the message
    itself names the server)."""
    return item.remote.sop if item.remote is not None else str(item.path)


def _what(item: InputItem) -> str:
    return item.remote.describe() if item.remote is not None else str(item.path)


def _reads(items: Sequence[InputItem], ahead: int) -> Iterator[tuple[InputItem, Callable[[], Any]]]:
    """(item, read) in order, ``read()`` giving its LoadedImage or raising. With ``ahead``, a thread reads
    that many items ahead of the caller (a DICOMweb retrieve overlaps the model; at most ``ahead + 1``
    images in memory)."""
    if ahead <= 0:
        for item in items:
            yield item, (lambda it=item: read_item(it))
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="modise-read-ahead") as pool:
        window: deque = deque()
        for item in items:
            window.append((item, pool.submit(read_item, item)))
            if len(window) > ahead:
                done, future = window.popleft()
                yield done, future.result
        while window:
            done, future = window.popleft()
            yield done, future.result


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
    remote = {it.path.name: it.source for it in items if it.remote is not None}
    for image in merged.images:  # a DICOMweb image's source: its WADO-RS URL (the record knows only its name)
        image["source"] = remote.get(image["file_name"], image["source"])
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


def _collect(future: Future, errors: list[dict[str, str]], stored: list[str]) -> None:
    record = future.result()
    errors.extend(record["errors"])
    stored.extend(record.get("stored", []))


def _writer_pool(workers: int):
    """One writer thread, or ``workers`` processes (spawned: the parent holds threads and a model)."""
    if workers == 1:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="modise-predict-writer")
    import multiprocessing

    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
