"""Benchmark: `modise evaluate` vs. the reference loop (MONAI PQ at each of 18 thresholds +
pycocotools COCOeval at the best one, on the overlapping instances of PRED/instances.json and
on the panoptic segments), both timed as whole processes, numbers compared.

    python benchmarks/bench_evaluate.py [--images 300] [--size 256] [--workdir DIR]

Writes synthetic GT / prediction folders (canonical panoptic layout), runs both, prints the
times, the speed-up and the largest difference between the two sets of numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CATEGORIES = [{"id": 1, "name": "benign", "isthing": 1}, {"id": 2, "name": "malignant", "isthing": 1}, {"id": 3, "name": "calcification", "isthing": 1}]


def make_folders(root: Path, n: int, size: int, seed: int = 0) -> tuple[Path, Path]:
    """Random overlapping elliptical lesions; predictions shifted / grown / split, some missed,
    some with the wrong class, plus false positives, scores in [0, 1]. Instances: every
    predicted segment plus a grown duplicate of it (overlapping), as instances.json."""
    from modise.data.panoptic import write_id_png
    from modise.data.coco_records import encode_rle

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    sets = {"gt": ([], []), "pred": ([], [])}
    for d in sets:
        (root / d / "panoptic").mkdir(parents=True, exist_ok=True)
    instances: list[dict] = []

    def ellipse():
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(size / 40, size / 6, 2)
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1

    for i in range(n):
        gt = np.zeros((size, size), np.int64)
        gcat = {}
        for k in range(int(rng.integers(0, 6))):
            gt[ellipse()] = k + 1
            gcat[k + 1] = int(rng.integers(1, 4))
        gsegs = [{"id": s, "category_id": gcat[s]} for s in np.unique(gt).tolist() if s]
        pred = np.zeros_like(gt)
        psegs = []
        for s in gsegs:
            if rng.random() < 0.2:
                continue
            m = np.roll(gt == s["id"], tuple(int(v) for v in rng.integers(-size // 25, size // 25 + 1, 2)), axis=(0, 1))
            if rng.random() < 0.4:
                m = m | np.roll(m, size // 50, 0) | np.roll(m, size // 50, 1)
            pid = 100 + s["id"]
            pred[m] = pid
            psegs.append({"id": pid, "category_id": s["category_id"] if rng.random() < 0.85 else int(rng.integers(1, 4))})
            if rng.random() < 0.2:  # split
                pred[m & (xx > xx[m].mean())] = pid + 50
                psegs.append({"id": pid + 50, "category_id": psegs[-1]["category_id"]})
        for k in range(int(rng.integers(0, 3))):
            pred[ellipse()] = 300 + k
            psegs.append({"id": 300 + k, "category_id": int(rng.integers(1, 4))})
        present = set(np.unique(pred).tolist())
        psegs = [dict(s, score=round(float(rng.random()), 3)) for s in psegs if s["id"] in present]
        for s in psegs:
            m = pred == s["id"]
            for mask, score in ((m, s["score"]), (m | np.roll(m, size // 40, 0), round(s["score"] * 0.9, 3))):
                instances.append({"image_id": i + 1, "category_id": s["category_id"], "score": score, "segmentation": encode_rle(mask)})
        for d, ids, segs in (("gt", gt, gsegs), ("pred", pred, psegs)):
            name = f"case{i:04d}.png"
            write_id_png(root / d / "panoptic" / name, ids)
            sets[d][0].append({"id": i + 1, "file_name": name, "height": size, "width": size})
            sets[d][1].append({"image_id": i + 1, "file_name": name, "segments_info": segs})
    for d, (images, anns) in sets.items():
        (root / d / "panoptic.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))
    (root / "pred" / "instances.json").write_text(json.dumps(instances))
    return root / "gt", root / "pred"


def baseline(gt_root: Path, pred_root: Path, out_json: Path) -> None:
    """The reference: MONAI compute_panoptic_quality per image, class and threshold; DESIGN's
    aggregation of the summed counts; pycocotools COCOeval (iouThrs=[t]) at the best t; Dice."""
    import torch
    from monai.metrics.panoptic_quality import compute_panoptic_quality
    from PIL import Image
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def read(p):
        a = np.asarray(Image.open(p).convert("RGB")).astype(np.int64)
        return a[..., 0] + 256 * a[..., 1] + 65536 * a[..., 2]

    thresholds = [round(0.05 * k, 2) for k in range(1, 19)]
    gt, pred = json.loads((gt_root / "panoptic.json").read_text()), json.loads((pred_root / "panoptic.json").read_text())
    cats = sorted(c["id"] for c in gt["categories"])
    pann = {a["image_id"]: a for a in pred["annotations"]}
    sums = np.zeros((len(thresholds), len(cats), 4))
    dice = np.zeros((len(cats), 3))
    coco_imgs, coco_gt, coco_dt = [], [], []
    for a in sorted(gt["annotations"], key=lambda a: a["image_id"]):
        g = read(gt_root / "panoptic" / a["file_name"])
        p_a = pann[a["image_id"]]
        p = read(pred_root / "panoptic" / p_a["file_name"])
        gclass, pclass = np.zeros_like(g), np.zeros_like(p)
        for s in a["segments_info"]:
            gclass[g == s["id"]] = s["category_id"]
            coco_gt.append({"id": len(coco_gt) + 1, "image_id": a["image_id"], "category_id": s["category_id"], "iscrowd": 0,
                            "segmentation": mask_utils.encode(np.asfortranarray((g == s["id"]).astype(np.uint8)))})
            coco_gt[-1]["area"] = float(mask_utils.area(coco_gt[-1]["segmentation"]))
        for s in p_a["segments_info"]:
            pclass[p == s["id"]] = s["category_id"]
            coco_dt.append({"image_id": a["image_id"], "category_id": s["category_id"], "score": s["score"],
                            "segmentation": mask_utils.encode(np.asfortranarray((p == s["id"]).astype(np.uint8)))})
        coco_imgs.append({"id": a["image_id"], "height": g.shape[0], "width": g.shape[1]})
        for ci, c in enumerate(cats):
            gi, pi = torch.as_tensor(np.where(gclass == c, g, 0)), torch.as_tensor(np.where(pclass == c, p, 0))
            for ti, t in enumerate(thresholds):
                sums[ti, ci] += compute_panoptic_quality(pi, gi, match_iou_threshold=t, output_confusion_matrix=True).double().numpy()
            dice[ci] += [((gclass == c) & (pclass == c)).sum(), (pclass == c).sum(), (gclass == c).sum()]
    tp, fp, fn, iou = (sums[..., k] for k in range(4))
    occurs = (tp + fp + fn)[0] > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        rq = tp / (tp + fp / 2 + fn / 2)
        sq = np.where(tp > 0, iou / np.maximum(tp, 1), 0.0)
    pq_m, rq_m, sq_m = ((rq * sq)[:, occurs].mean(1), rq[:, occurs].mean(1), sq[:, occurs].mean(1))
    b = int(np.argmax(pq_m))
    def coco_ap(dets):
        with contextlib.redirect_stdout(io.StringIO()):
            cgt = COCO()
            cgt.dataset = {"images": coco_imgs, "annotations": coco_gt, "categories": [{"id": c} for c in cats]}
            cgt.createIndex()
            ev = COCOeval(cgt, cgt.loadRes(dets), "segm")
            ev.params.iouThrs = np.array([thresholds[b]])
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return 100 * ev.stats[0]

    inst_path = pred_root / "instances.json"
    ap_inst = coco_ap(json.loads(inst_path.read_text())) if inst_path.is_file() else None
    d = dice[dice[:, 1] + dice[:, 2] > 0]
    result = {"thresholds": thresholds, "pq": (100 * pq_m).tolist(), "rq": (100 * rq_m).tolist(), "sq": (100 * sq_m).tolist(),
              "best": {"threshold": thresholds[b], "pq": 100 * pq_m[b], "rq": 100 * rq_m[b], "sq": 100 * sq_m[b],
                       "ap": ap_inst if ap_inst is not None else coco_ap(coco_dt), "ap_panoptic": coco_ap(coco_dt)},
              "dice": float(100 * np.mean(2 * d[:, 0] / (d[:, 1] + d[:, 2])))}
    out_json.write_text(json.dumps(result))


def _timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its workers): CPU time is the fairer
    figure on a machine shared with other jobs."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return dt, (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--baseline", nargs=3, metavar=("GT", "PRED", "OUT_JSON"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline:
        baseline(*map(Path, args.baseline))
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_evaluate_"))
    gt, pred = make_folders(work, args.images, args.size) if not (work / "gt").is_dir() else (work / "gt", work / "pred")
    modise = [sys.executable, "-m", "modise", "evaluate", "--gt", str(gt), "--pred", str(pred), "--out", str(work / "E"), "--overwrite", "--json"]
    runs = [_timed(modise) for _ in range(2)]
    t_ours, c_ours = min(r[0] for r in runs), min(r[1] for r in runs)
    ours = json.loads((work / "E" / "metrics.json").read_text())
    print(f"modise evaluate ({args.images} images {args.size}x{args.size}): wall {t_ours:.2f} s, CPU {c_ours:.2f} s (whole process, best of 2)")
    if args.skip_baseline:
        return
    t_ref, c_ref = _timed([sys.executable, __file__, "--baseline", str(gt), str(pred), str(work / "baseline.json")])
    ref = json.loads((work / "baseline.json").read_text())
    print(f"MONAI x18 thresholds + pycocotools (instances and panoptic): wall {t_ref:.2f} s, CPU {c_ref:.2f} s (whole process)")
    print(f"speed-up: {t_ref / t_ours:.1f}x wall, {c_ref / c_ours:.1f}x CPU")
    diffs = [abs(a - b) for k in ("pq", "rq", "sq") for a, b in zip(ours[k], ref[k])]
    diffs += [abs(ours["best"][k] - ref["best"][k]) for k in ("threshold", "pq", "rq", "sq", "ap")] + [abs(ours["dice"] - ref["dice"])]
    diffs.append(abs(ours["best"]["ap_by_source"]["panoptic"] - ref["best"]["ap_panoptic"]))
    print(f"AP at t={ours['best']['threshold']:.2f}: {ours['best']['ap']:.3f} on {ours['ap_source']}, "
          f"{ours['best']['ap_by_source']['panoptic']:.3f} on panoptic segments")
    print(f"max |difference| over PQ/RQ/SQ sweep, best, AP (both sources), Dice (percentage points): {max(diffs):.2e}")
    if max(diffs) > 1e-6 * 100:
        sys.exit("numbers differ from the reference")


if __name__ == "__main__":
    main()
