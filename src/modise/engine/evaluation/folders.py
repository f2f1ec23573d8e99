"""``evaluate_folders``: score a prediction folder against a GT folder (both canonical
COCO panoptic), write metrics.json, metrics.md, threshold_sweep.png and overlays.

Images are streamed: a worker reads the two PNGs of one image, matches them and returns
only counts; with enough images a process pool uses all cores.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.panoptic import IMAGES_DIR, PANOPTIC_DIR, Category, load_panoptic_json
from modise.errors import ModiseError
from modise.outputs import output_dir, write_bytes_atomic, write_json_atomic

from .evaluator import PanopticEvaluator, check_thresholds
from .matching import ImageResult, match_image

POOL_MIN_IMAGES = 64  # below this, worker start-up costs more than it saves


@dataclass
class Pair:
    """One GT image and its prediction (``pred_png`` None: no prediction -> empty)."""

    image_id: Any
    file_name: str
    gt_png: Path
    gt_segments: list[dict]
    pred_png: Path | None
    pred_segments: list[dict]
    height: int | None = None
    width: int | None = None


def _stem(name: str | None) -> str | None:
    return Path(name).stem if name else None


def pair_images(gt_root: Path, pred_root: Path) -> tuple[list[Category], list[Pair], list[str], list[str]]:
    """Match prediction annotations to GT images by id (same file stem when both have one)
    or else by file name. Returns categories, pairs (ascending image id), GT images without a
    prediction, prediction entries without a GT image."""
    gt, pred = load_panoptic_json(gt_root), load_panoptic_json(pred_root)
    try:
        cats = [Category.from_json(c) for c in gt["categories"]]
    except (KeyError, TypeError, ValueError):
        raise ModiseError(f"{gt_root / 'panoptic.json'}: a category lacks an integer 'id' or a 'name'.") from None
    gt_imgs = {im["id"]: im for im in gt["images"]}
    gt_anns = {a["image_id"]: a for a in gt["annotations"]}
    pred_imgs = {im["id"]: im for im in pred["images"]}
    pred_by_id, pred_by_stem = {}, {}
    for a in pred["annotations"]:
        if "image_id" not in a or "file_name" not in a:
            raise ModiseError(f"{pred_root / 'panoptic.json'}: an annotation lacks 'image_id' or 'file_name'.")
        pred_by_id[a["image_id"]] = a
        im = pred_imgs.get(a["image_id"], {})
        pred_by_stem[_stem(im.get("file_name")) or _stem(a["file_name"])] = a
    pairs, missing, used = [], [], set()
    for image_id in sorted(gt_imgs, key=lambda i: (isinstance(i, str), i)):
        im = gt_imgs[image_id]
        ann = gt_anns.get(image_id)
        name = im.get("file_name") or (ann or {}).get("file_name") or str(image_id)
        if ann is None:
            raise ModiseError(f"{gt_root / 'panoptic.json'}: image {image_id} ({name}) has no annotation.")
        stem = _stem(im.get("file_name")) or _stem(ann["file_name"])
        p = pred_by_id.get(image_id)
        if p is not None:
            p_stem = _stem(pred_imgs.get(image_id, {}).get("file_name")) or _stem(p["file_name"])
            if stem and p_stem and p_stem != stem:
                p = None
        if p is None:
            p = pred_by_stem.get(stem)
        if p is None:
            missing.append(name)
        else:
            used.add(id(p))
        pairs.append(Pair(
            image_id=image_id, file_name=name,
            gt_png=gt_root / PANOPTIC_DIR / ann["file_name"], gt_segments=list(ann.get("segments_info", [])),
            pred_png=None if p is None else pred_root / PANOPTIC_DIR / p["file_name"],
            pred_segments=[] if p is None else list(p.get("segments_info", [])),
            height=im.get("height"), width=im.get("width"),
        ))
    extra = [str(a["file_name"]) for a in pred["annotations"] if id(a) not in used]
    return cats, pairs, missing, extra


def _read(path: Path, where: str, what: str) -> np.ndarray:
    if not path.is_file():
        raise ModiseError(f"{where}: {what} PNG '{path}' not found.")
    try:
        return read_ids(path)
    except Exception as e:  # PIL raises several types for broken files
        raise ModiseError(f"{where}: cannot read {what} PNG '{path}' ({e}).") from None


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray, str]:
    """Read both id maps; a missing prediction is an empty map of the GT's size."""
    where = f"image {pair.image_id} ({pair.file_name})"
    gt = _read(pair.gt_png, where, "ground-truth")
    if pair.height and pair.width and gt.shape != (int(pair.height), int(pair.width)):
        raise ModiseError(f"{where}: the ground-truth PNG is {gt.shape[0]}x{gt.shape[1]} but panoptic.json says {pair.height}x{pair.width}.")
    pred = np.zeros_like(gt) if pair.pred_png is None else _read(pair.pred_png, where, "predicted")
    return gt, pred, where


def read_ids(path: Path) -> np.ndarray:
    """Panoptic PNG -> (H, W) segment ids (R + 256 G + 256^2 B), as ``read_id_png`` but with a
    uint8 fast path when every id is below 256 (G = B = 0), the usual case for lesions."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    if not rgb[..., 1:].any():
        return rgb[..., 0].copy()
    return rgb[..., 0].astype(np.int32) | (rgb[..., 1].astype(np.int32) << 8) | (rgb[..., 2].astype(np.int32) << 16)


_WORKER: dict[str, Any] = {}


def _init_worker(cat_index: dict[int, int], thresholds: np.ndarray) -> None:
    _WORKER["cat_index"], _WORKER["thresholds"] = cat_index, thresholds


def _score_pair(pair: Pair) -> ImageResult:
    gt, pred, where = load_pair(pair)
    return match_image(pair.image_id, gt, pair.gt_segments, pred, pair.pred_segments, _WORKER["cat_index"], _WORKER["thresholds"], where, strict=True)


def score_pairs(pairs: Sequence[Pair], cat_index: dict[int, int], thresholds: np.ndarray, workers: int | None = None) -> Iterator[ImageResult]:
    """Yield each image's result in order; a fork pool when the set is large enough."""
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers <= 1 or len(pairs) < POOL_MIN_IMAGES or sys.platform == "win32":
        _init_worker(cat_index, thresholds)
        for p in pairs:
            yield _score_pair(p)
        return
    import multiprocessing as mp

    import scipy.optimize  # noqa: F401  imported once here, inherited by the forked workers

    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(cat_index, thresholds)) as pool:
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
) -> dict[str, Any]:
    """Evaluate PRED against GT and write ``out``/{metrics.json, metrics.md, threshold_sweep.png,
    overlays/}. Returns the metrics.json dict. Nothing is left in ``out`` on failure."""
    gt, pred, out = Path(gt), Path(pred), Path(out)
    thr = check_thresholds(thresholds)
    if overlays < 0:
        raise ModiseError("--overlays must be >= 0.")
    cats, pairs, missing, extra = pair_images(gt, pred)
    if not pairs:
        raise ModiseError(f"{gt / 'panoptic.json'}: lists no images to evaluate.")
    ev = PanopticEvaluator(cats, thr)
    with output_dir(out, overwrite, [gt, pred]) as stage:
        results = score_pairs(pairs, ev.cat_index, ev.thresholds, workers)
        if progress:
            from rich.progress import Progress

            with Progress(transient=True, console=_stderr_console()) as bar:
                task = bar.add_task("evaluating", total=len(pairs))
                for r in results:
                    ev.add_result(r)
                    bar.advance(task)
        else:
            for r in results:
                ev.add_result(r)
        metrics = ev.compute()
        write_json_atomic(stage / "metrics.json", metrics)
        notes = ""
        if missing:
            notes += f"\n{len(missing)} GT image(s) had no prediction and count as empty: {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}\n"
        if extra:
            notes += f"\n{len(extra)} prediction(s) match no GT image and were ignored: {', '.join(extra[:20])}{' ...' if len(extra) > 20 else ''}\n"
        write_bytes_atomic(stage / "metrics.md", (metrics_table_row(metrics, pred.resolve().name) + notes).encode())
        from .figures import threshold_sweep_figure

        threshold_sweep_figure(metrics, stage / "threshold_sweep.png")
        if overlays:
            from .overlays import write_overlays

            shown = sorted(pairs, key=lambda p: not (p.gt_segments or p.pred_segments))[:overlays]  # lesions first
            write_overlays(shown, ev.categories, stage / "overlays", images_root or gt / IMAGES_DIR)
    for msg, items in (("GT image(s) had no prediction and count as empty", missing), ("prediction(s) match no GT image and were ignored", extra)):
        if items:
            _stderr_console().print(f"[yellow]warning:[/] {len(items)} {msg}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}", highlight=False)
    return metrics


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)
