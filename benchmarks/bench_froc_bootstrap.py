"""Benchmark (issue 28): `modise evaluate` with FROC + 1000 patient-level bootstrap replicates against
the same command without them, on 3,000 images with 5 lesion classes. Goal: at most 3x.

    python benchmarks/bench_froc_bootstrap.py [--images 3000] [--size 256] [--instances 20]
        [--workers N] [--baseline-rev GIT_REV] [--workdir DIR]

Synthetic GT / prediction folders are written as real files (panoptic PNGs, panoptic.json with
patient_id, 2 images per patient, and instances.json). Timed as whole processes (wall and CPU
seconds, best of --repeat):

* ``--bootstrap 0``: matching + PQ/AP/Dice + FROC point estimates (FROC is always on);
* ``--bootstrap 1000``: the same plus the 1000 replicates (CIs of every metric and each CPM);
* with ``--baseline-rev``: evaluate as it was at that git revision (no FROC, no bootstrap),
  exported with ``git archive`` and run from there, i.e. "today's evaluate".
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CATEGORIES = [{"id": k, "name": f"class{k}", "isthing": 1} for k in range(1, 6)]


def make_folders(root: Path, n: int, size: int, n_inst: int, seed: int = 0) -> tuple[Path, Path]:
    """GT: 0-3 elliptical lesions per image, 5 classes. Predictions: most lesions found (shifted,
    sometimes the wrong class), false positives; instances.json: the panoptic segments plus
    low-score extra instances up to ``n_inst`` per image (as Mask2Former's top-k)."""
    from modise.data.coco_records import encode_rle
    from modise.data.panoptic import write_id_png

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    sets = {"gt": ([], []), "pred": ([], [])}
    for d in sets:
        (root / d / "panoptic").mkdir(parents=True, exist_ok=True)
    instances: list[dict] = []

    def ellipse():
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(size / 50, size / 8, 2)
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1

    for i in range(n):
        gt = np.zeros((size, size), np.int64)
        gcat = {}
        for k in range(int(rng.integers(0, 4))):
            gt[ellipse()] = k + 1
            gcat[k + 1] = int(rng.integers(1, 6))
        gsegs = [{"id": s, "category_id": gcat[s]} for s in np.unique(gt).tolist() if s]
        pred = np.zeros_like(gt)
        psegs = []
        for s in gsegs:
            if rng.random() < 0.25:
                continue
            m = np.roll(gt == s["id"], tuple(int(v) for v in rng.integers(-size // 30, size // 30 + 1, 2)), axis=(0, 1))
            pred[m] = 100 + s["id"]
            psegs.append({"id": 100 + s["id"], "category_id": s["category_id"] if rng.random() < 0.85 else int(rng.integers(1, 6)),
                          "score": round(float(rng.uniform(0.4, 1)), 3)})
        for k in range(int(rng.integers(0, 3))):
            pred[ellipse()] = 300 + k
            psegs.append({"id": 300 + k, "category_id": int(rng.integers(1, 6)), "score": round(float(rng.uniform(0, 0.7)), 3)})
        present = set(np.unique(pred).tolist())
        psegs = [s for s in psegs if s["id"] in present]
        inst = [{"image_id": i + 1, "category_id": s["category_id"], "score": s["score"], "segmentation": encode_rle(pred == s["id"])}
                for s in psegs]
        while len(inst) < n_inst:
            inst.append({"image_id": i + 1, "category_id": int(rng.integers(1, 6)), "score": round(float(rng.uniform(0, 0.3)), 4),
                         "segmentation": encode_rle(ellipse())})
        instances += inst
        for d, ids, segs in (("gt", gt, gsegs), ("pred", pred, psegs)):
            name = f"case{i:04d}.png"
            write_id_png(root / d / "panoptic" / name, ids)
            im = {"id": i + 1, "file_name": name, "height": size, "width": size}
            if d == "gt":
                im.update(patient_id=f"P{i // 2:04d}", view="CC" if i % 2 == 0 else "MLO", breast_density="ABCD"[(i // 2) % 4])
            sets[d][0].append(im)
            sets[d][1].append({"image_id": i + 1, "file_name": name, "segments_info": segs})
    for d, (images, anns) in sets.items():
        (root / d / "panoptic.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))
    (root / "pred" / "instances.json").write_text(json.dumps(instances))
    return root / "gt", root / "pred"


def _timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """(wall s, CPU s of the process and its workers, peak RSS MiB of the largest child)."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return dt, (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), ru1.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--instances", type=int, default=20, help="instances per image in instances.json (Mask2Former: 100)")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--baseline-rev", default=None, help="git revision whose evaluate is 'today's' (e.g. the branch point)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    import os

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_froc_"))
    if not (work / "gt").is_dir():
        t0 = time.perf_counter()
        make_folders(work, args.images, args.size, args.instances)
        print(f"wrote {args.images} images {args.size}x{args.size}, {args.instances} instances each, in {time.perf_counter() - t0:.0f} s")
    gt, pred = work / "gt", work / "pred"
    cmd = [sys.executable, "-m", "modise", "evaluate", "--gt", str(gt), "--pred", str(pred), "--overwrite", "--json"]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    env = dict(os.environ)
    rows = {}
    runs = [("today's evaluate", args.baseline_rev, [])] if args.baseline_rev else []
    runs += [("FROC, no bootstrap", None, ["--bootstrap", "0"]), (f"FROC + {args.bootstrap} bootstraps", None, ["--bootstrap", str(args.bootstrap)])]
    for name, rev, extra in runs:
        run_env = env
        if rev:
            src = work / f"src-{rev}"
            if not src.is_dir():
                src.mkdir()
                repo = Path(__file__).resolve().parents[1]
                archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "src"], capture_output=True, check=True).stdout
                subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
            run_env = dict(env, PYTHONPATH=str(src / "src"))
        out = work / ("E-" + name.split()[0].strip("'").lower())
        rows[name] = min((_timed(cmd + ["--out", str(out)] + extra, run_env) for _ in range(args.repeat)), key=lambda r: r[0])
        w, c, mem = rows[name]
        print(f"{name:28s} wall {w:7.1f} s  CPU {c:7.1f} s  peak RSS {mem:6.0f} MiB", flush=True)
    base = rows.get("today's evaluate") or rows["FROC, no bootstrap"]
    top = rows[f"FROC + {args.bootstrap} bootstraps"]
    print(f"ratio (FROC + bootstraps / {'today' if args.baseline_rev else 'no bootstrap'}): {top[0] / base[0]:.2f}x wall, {top[1] / base[1]:.2f}x CPU")


if __name__ == "__main__":
    main()
