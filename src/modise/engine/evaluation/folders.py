"""``evaluate_folders``: score a prediction folder against a GT folder (both canonical
COCO panoptic), write metrics.json, metrics.md, threshold_sweep.png and overlays.

Images are streamed: a worker reads the two PNGs of one image, matches them and returns
only counts; with enough images a process pool uses all cores.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.panoptic import IMAGES_DIR, INSTANCES_JSON
from modise.progress import stderr_console
from modise.errors import ModiseError, UsageError
from modise.outputs import output_dir, write_bytes_atomic, write_json_atomic
from modise.viz.figures import froc_figure, threshold_sweep_figure

from .cad_report import cad_markdown, froc_csv
from .evaluator import PanopticEvaluator, check_thresholds
from .froc import DEFAULT_FROC_IOU
from .matching import ImageResult, match_image
from .overlays import write_overlays
from .pairs import Pair, load_pair, pair_images

POOL_MIN_IMAGES = 64  # below this, worker start-up costs more than it saves


_WORKER: dict[str, Any] = {}


def _init_worker(cat_index: dict[int, int], thresholds: np.ndarray, instance_classes: np.ndarray | None = None,
                 froc: tuple[float, str] | None = None) -> None:
    _WORKER.update(cat_index=cat_index, thresholds=thresholds, instance_classes=instance_classes, froc=froc)


def _score_pair(pair: Pair) -> ImageResult:
    gt, pred, where = load_pair(pair)
    return match_image(pair.image_id, gt, pair.gt_segments, pred, pair.pred_segments, _WORKER["cat_index"], _WORKER["thresholds"], where,
                       strict=True, instances=pair.instances, instance_classes=_WORKER["instance_classes"], froc=_WORKER["froc"])


def score_pairs(
    pairs: Sequence[Pair], cat_index: dict[int, int], thresholds: np.ndarray, workers: int | None = None,
    instance_classes: np.ndarray | None = None, froc: tuple[float, str] | None = None,
) -> Iterator[ImageResult]:
    """Yield each image's result in order; a fork pool when the set is large enough."""
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers <= 1 or len(pairs) < POOL_MIN_IMAGES or sys.platform == "win32":
        _init_worker(cat_index, thresholds, instance_classes, froc)
        for p in pairs:
            yield _score_pair(p)
        return
    import multiprocessing as mp

    import scipy.optimize  # noqa: F401  imported once here, inherited by the forked workers

    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(cat_index, thresholds, instance_classes, froc)) as pool:
        yield from pool.imap(_score_pair, pairs, chunksize=max(1, min(32, len(pairs) // (4 * workers))))


def metrics_table_row(m: dict[str, Any], name: str) -> str:
    """The paper's Table 1 row as Markdown: RQ_t SQ_t PQ_t AP_t Dice (percentages)."""
    b = m["best"]

    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f}"

    return (
        "| variant | t | RQ_t | SQ_t | PQ_t | AP_t | Dice |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {name} | {b['threshold']:.2f} | {f(b['rq'])} | {f(b['sq'])} | {f(b['pq'])} | {f(b['ap'])} | {f(m['dice'])} |\n"
    )


def evaluate_folders(
    gt: Path,
    pred: Path,
    out: Path,
    thresholds: Sequence[float] | None = None,
    overlays: int = 0,
    overwrite: bool = False,
    images_root: Path | None = None,
    workers: int | None = None,
    progress: bool = False,
    ap_source: str = "instances",
    fold: int | None = None,
    froc_iou: float = DEFAULT_FROC_IOU,
    froc_hit: str = "iou",
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate PRED against GT and write ``out``/{metrics.json, metrics.md, threshold_sweep.png,
    froc.csv, froc.png, overlays/}. Returns the metrics.json dict. Nothing is left in ``out`` on failure.

    ``froc_iou`` / ``froc_hit``: FROC's hit rule (:mod:`.froc`); ``bootstrap``: patient-level
    bootstrap replicates of the 95 % intervals (0: none; ``modise evaluate`` asks for
    :data:`.bootstrap.DEFAULT_REPLICATES`), drawn with ``seed``.

    ``ap_source``: "instances" (AP on PRED/instances.json, detectron2's protocol; falls back
    to the panoptic segments, with a warning, when PRED has none) or "panoptic".
    ``fold``: score only the GT images of fold K of GT/folds.json."""
    gt, pred, out = Path(gt), Path(pred), Path(out)
    thr = check_thresholds(thresholds)
    if overlays < 0:
        raise UsageError("--overlays", f"must be 0 or more, not {overlays}.")
    if workers is not None and workers < 1:
        raise UsageError("--workers", f"must be 1 or more (processes), not {workers}.")
    image_ids = None
    if fold is not None:
        from modise.data.dataset import fold_image_ids, load_folds

        image_ids = fold_image_ids(load_folds(gt), fold, gt)
    cats, pairs, missing, extra = pair_images(gt, pred, image_ids, with_instances=ap_source == "instances")
    if not pairs:
        raise ModiseError(f"{gt / 'panoptic.json'}: lists no images to evaluate.")
    if len(missing) == len(pairs):  # scores of all zeros would look like a result
        raise UsageError("--pred", f"none of the {len(extra)} prediction(s) in '{pred}' matches an image of '{gt}' "
                                   f"(by file name); is --pred the output of `modise predict` on these images?")
    if bootstrap < 0:
        raise UsageError("--bootstrap", f"must be 0 (off) or more replicates, not {bootstrap}.")
    ev = PanopticEvaluator(cats, thr, ap_source=ap_source, froc_iou=froc_iou, froc_hit=froc_hit)
    with output_dir(out, overwrite, [gt, pred, images_root]) as stage:
        results = score_pairs(pairs, ev.cat_index, ev.thresholds, workers, ev.instance_classes, ev.froc)
        if progress:
            from rich.progress import Progress

            with Progress(transient=True, console=stderr_console()) as bar:
                task = bar.add_task("evaluating", total=len(pairs))
                for r in results:
                    ev.add_result(r)
                    bar.advance(task)
        else:
            for r in results:
                ev.add_result(r)
        metrics = ev.compute(bootstrap=bootstrap, seed=seed, images={p.image_id: p.record or {} for p in pairs})
        if fold is not None:
            metrics["fold"] = {"index": fold, "images": len(pairs)}
        write_json_atomic(stage / "metrics.json", metrics)
        notes = f"\nAP on {metrics['ap_source']}" + (f" ({metrics['ap_source_note']})" if "ap_source_note" in metrics else "") + ".\n"
        if fold is not None:
            notes += f"\nFold {fold} of {gt / 'folds.json'}: {len(pairs)} image(s).\n"
        if missing:
            notes += f"\n{len(missing)} GT image(s) had no prediction and count as empty: {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}\n"
        if extra:
            notes += f"\n{len(extra)} prediction(s) match no GT image and were ignored: {', '.join(extra[:20])}{' ...' if len(extra) > 20 else ''}\n"
        if "froc" in metrics and metrics["froc_protocol"]["detections"] == "panoptic" and "ap_source_note" in metrics:
            notes += "\nFROC on the panoptic segments with their scores (no instances.json).\n"
        md = metrics_table_row(metrics, pred.resolve().name) + notes + cad_markdown(metrics)
        write_bytes_atomic(stage / "metrics.md", md.encode())
        threshold_sweep_figure(metrics, stage / "threshold_sweep.png")
        if "froc" in metrics:
            write_bytes_atomic(stage / "froc.csv", froc_csv(metrics).encode())
            froc_figure(metrics["froc"], stage / "froc.png", title=pred.resolve().name)
        if overlays:
            shown = sorted(pairs, key=lambda p: not (p.gt_segments or p.pred_segments))[:overlays]  # lesions first
            write_overlays(shown, ev.categories, stage / "overlays", images_root or gt / IMAGES_DIR)
    if "ap_source_note" in metrics:
        stderr_console().print(f"[yellow]warning:[/] {pred / INSTANCES_JSON} not found: {metrics['ap_source_note']}; "
                               "FROC too uses the panoptic segments with their scores.", highlight=False)
    if metrics.get("bootstrap", {}).get("note"):
        stderr_console().print(f"[yellow]warning:[/] {gt / 'panoptic.json'}: {metrics['bootstrap']['note']}.", highlight=False)
    for msg, items in (("GT image(s) had no prediction and count as empty", missing), ("prediction(s) match no GT image and were ignored", extra)):
        if items:
            stderr_console().print(f"[yellow]warning:[/] {len(items)} {msg}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}", highlight=False)
    return metrics
