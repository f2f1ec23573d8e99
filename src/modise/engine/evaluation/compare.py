"""``compare_folders``: is model A better than model B on the same images beyond chance?

Both prediction sets are scored on the GT images both predicted (each at its own best-PQ IoU
threshold, as Table 1 reads them); the same patient resamples then score A and B
(:func:`.bootstrap.replicates`), giving per metric A - B, its 95 % percentile interval and a
two-sided paired-bootstrap p-value (:func:`.bootstrap.paired_p`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modise.errors import ModiseError, UsageError
from modise.outputs import check_output_dir, output_dir, write_bytes_atomic, write_json_atomic

from .bootstrap import DEFAULT_REPLICATES, PAIRED_METHOD, paired_p, patient_index, percentile_ci, replicates
from .cad import LABELS, evaluator_stats
from .evaluator import PanopticEvaluator, check_thresholds
from .folders import score_pairs
from .froc import ALL, DEFAULT_FROC_IOU
from .matching import image_order_key
from .pairs import pair_images

METRICS = (("pq", 100.0), ("rq", 100.0), ("sq", 100.0), ("ap", 100.0), ("dice", 100.0), (f"cpm:{ALL}", 1.0))
UNITS = "pq, rq, sq, ap, dice in %; cpm (FROC, all lesions) as a fraction"


def _score(cats, pairs, keep: set, thresholds, ap_source: str, froc: tuple[float, str], workers):
    """Match once, the images in ``keep``: (evaluator, its metrics, best threshold index, pairs)."""
    pairs = [p for p in pairs if p.image_id in keep]
    ev = PanopticEvaluator(cats, thresholds, ap_source=ap_source, froc_iou=froc[0], froc_hit=froc[1])
    for r in score_pairs(pairs, ev.cat_index, ev.thresholds, workers, ev.instance_classes, ev.froc):
        ev.add_result(r)
    m = ev.compute()
    b = int(np.flatnonzero(np.isclose(ev.thresholds, m["best"]["threshold"]))[0])
    return ev, m, b, pairs


def _name(pred: Path | list[Path]) -> str:
    return (pred[0] if isinstance(pred, list) else pred).resolve().name


def _paths(pred: Path | list[Path]) -> str | list[str]:
    return [str(p) for p in pred] if isinstance(pred, list) else str(pred)


def _num(v: Any, scale: float) -> float | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v) * scale


def compare_markdown(result: dict[str, Any]) -> str:
    """The table a reviewer can paste: metric | A | B | A - B | 95 % CI | p."""
    a, b = result["names"]
    head = f"| metric | {a} | {b} | A − B | 95 % CI | p |\n|---|---|---|---|---|---|\n"

    def f(v: Any, d: int) -> str:
        return "n/a" if v is None else f"{v:.{d}f}"

    rows = ""
    for key, m in result["metrics"].items():
        d = 3 if key == "cpm" else 1
        ci = "n/a" if not m.get("ci") or m["ci"][0] is None else f"[{m['ci'][0]:.{d}f}, {m['ci'][1]:.{d}f}]"
        p = "n/a" if m.get("p") is None else ("< 0.001" if m["p"] < 0.001 else f"{m['p']:.3f}")
        rows += f"| {LABELS.get(key, key.upper())} | {f(m['a'], d)} | {f(m['b'], d)} | {f(m['diff'], d)} | {ci} | {p} |\n"
    foot = (f"\n{result['n_images']} images, {result['n_patients']} patients; t: A {result['thresholds']['a']:.2f}, "
            f"B {result['thresholds']['b']:.2f} (each its best PQ). {UNITS}.\nMethod: {result['method']}.\n")
    if result.get("notes"):
        foot += "".join(f"\nNote: {n}.\n" for n in result["notes"])
    return head + rows + foot


def predicted_pairs(gt: Path, preds: Path | list[Path], image_ids, ap_source: str):
    """(categories, pairs, ids with a prediction) of one side; several folders (a CV run's folds) pooled."""
    cats, pairs, done = None, {}, set()
    for pred in preds if isinstance(preds, list) else [preds]:
        cats, ps, _, _ = pair_images(gt, pred, image_ids, with_instances=ap_source == "instances")
        for p in ps:
            if p.pred_png is None:
                pairs.setdefault(p.image_id, p)
                continue
            if p.image_id in done:
                raise ModiseError(f"{pred}: image {p.image_id} ({p.file_name}) is predicted by two of the folders compared as one model.")
            done.add(p.image_id)
            pairs[p.image_id] = p
    return cats, list(pairs.values()), done


def paired_comparison(
    gt: Path, pred_a: Path | list[Path], pred_b: Path | list[Path], *, fold: int | None = None, bootstrap: int = DEFAULT_REPLICATES,
    seed: int = 0, froc_iou: float = DEFAULT_FROC_IOU, froc_hit: str = "iou", thresholds: Sequence[float] | None = None,
    ap_source: str = "instances", workers: int | None = None, names: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Paired comparison of two prediction folders against GT (compare.json's dict). A side may be a
    list of folders (e.g. each fold's out-of-fold predictions), pooled.

    Returns compare.json's dict: ``metrics`` (pq, rq, sq, ap, dice, cpm: a, b, diff, ci, p), ``n_images``,
    ``n_patients``, ``method``, ``thresholds`` (each set's best-PQ t), ``names``, ``notes``."""
    gt = Path(gt)
    pred_a, pred_b = ([Path(p) for p in x] if isinstance(x, (list, tuple)) else Path(x) for x in (pred_a, pred_b))
    if bootstrap < 1:
        raise UsageError("--bootstrap", f"a paired comparison needs replicates (1 or more), not {bootstrap}.")
    thr = check_thresholds(thresholds)
    image_ids = None
    if fold is not None:
        from modise.data.dataset import fold_image_ids, load_folds

        image_ids = fold_image_ids(load_folds(gt), fold, gt)
    sets = [predicted_pairs(gt, pred, image_ids, ap_source) for pred in (pred_a, pred_b)]
    both = sets[0][2] & sets[1][2]
    if not both:
        raise ModiseError(f"No image of '{gt}' has a prediction in both '{pred_a}' and '{pred_b}'.")
    notes = []
    n_gt = len(sets[0][1])
    if len(both) < n_gt:
        notes.append(f"{n_gt - len(both)} of {n_gt} GT image(s) lack a prediction in A or B and are left out")
    froc = (float(froc_iou), froc_hit)
    ev_a, m_a, b_a, pairs = _score(*sets[0][:2], both, thr, ap_source, froc, workers)
    ev_b, m_b, b_b, _ = _score(*sets[1][:2], both, thr, ap_source, froc, workers)
    for tag, m in (("A", m_a), ("B", m_b)):
        if "ap_source_note" in m:
            notes.append(f"{tag}: {m['ap_source_note']} (FROC too)")
    stats = [evaluator_stats(ev_a, b_a, m_a["ap_source"], by_size=False), evaluator_stats(ev_b, b_b, m_b["ap_source"], by_size=False)]
    records = {p.image_id: p.record or {} for p in pairs}
    ids = sorted(both, key=image_order_key)
    pidx, n_pat, note = patient_index(ids, {i: records.get(i, {}).get("patient_id") for i in ids})
    if note:
        notes.append(note)
    reps = replicates(stats, pidx, bootstrap, seed)
    points = [s.metrics() for s in stats]
    metrics = {}
    for key, scale in METRICS:
        if key not in points[0]:
            continue
        a, b = _num(points[0][key], scale), _num(points[1][key], scale)
        d = (reps[0][key] - reps[1][key]) * scale
        metrics[key.split(":")[0]] = {"a": a, "b": b, "diff": None if a is None or b is None else a - b,
                                      "ci": percentile_ci(d), "p": paired_p(d)}
    result = {
        "metrics": metrics, "n_images": len(ids), "n_patients": n_pat, "method": PAIRED_METHOD.format(n=bootstrap),
        "names": list(names or (_name(pred_a), _name(pred_b))), "a": _paths(pred_a), "b": _paths(pred_b),
        "thresholds": {"a": float(ev_a.thresholds[b_a]), "b": float(ev_b.thresholds[b_b])},
        "bootstrap": {"replicates": int(bootstrap), "seed": int(seed)}, "fold": fold, "notes": notes,
    }
    return result


def write_comparison(stage: Path, result: dict[str, Any]) -> None:
    """compare.json and compare.md into ``stage``."""
    write_json_atomic(stage / "compare.json", result)
    write_bytes_atomic(stage / "compare.md", compare_markdown(result).encode())


def compare_folders(gt: Path, pred_a: Path | list[Path], pred_b: Path | list[Path], out: Path, *, overwrite: bool = False,
                    **kw: Any) -> dict[str, Any]:
    """:func:`paired_comparison` written to ``out``/{compare.json, compare.md} (``kw``: its options)."""
    inputs = [Path(gt), *(pred_a if isinstance(pred_a, list) else [pred_a]), *(pred_b if isinstance(pred_b, list) else [pred_b])]
    check_output_dir(out, overwrite, inputs)  # before any scoring
    result = paired_comparison(gt, pred_a, pred_b, **kw)
    with output_dir(out, overwrite, inputs) as stage:
        write_comparison(stage, result)
    return result
