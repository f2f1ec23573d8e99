"""Benchmark: archive scale. Images per second and peak RSS of ``prepare folder``, ``predict`` (a tiny
random-weight M-ODISE, so that the model costs little and the rest shows) and ``evaluate``, per image
size and per archive size, each run as its own process; the growth exponent (time ~ pixels^a or
images^a) is printed, then the projected time for a 20,000-image archive of 3328x4096 mammograms.

    python benchmarks/bench_scale.py [--sizes 512x512,1024x1024,2048x2048,3328x4096] [--images 4]
        [--counts 300,3000,30000] [--workers 1,2] [--batch-size 2] [--device cpu] [--json OUT.json]

Each predict row has predict's start-up (imports, model build; measured once on one small image)
subtracted, so it is what one more image of an archive costs; wall and CPU seconds are both given (on a
shared machine CPU seconds are the steadier number).

PIL's decode + re-encode of each image size is measured alongside, the yardstick of the predict goal
(at most 8x that per image on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "modise" / "assets" / "samples"


def _images(folder: Path, n: int, size: tuple[int, int], masks: Path | None = None) -> None:
    """``n`` real sample mammograms resized to ``size`` (H, W) as PNG (+ their masks)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    srcs = sorted((SAMPLES / "images").glob("*.jpg"))
    for i in range(n):
        src = srcs[i % len(srcs)]
        Image.open(src).convert("L").resize(size[::-1], Image.BILINEAR).save(folder / f"P{i:05d}_L_DM_CC.png", compress_level=1)
        if masks is not None:
            masks.mkdir(parents=True, exist_ok=True)
            m = np.asarray(Image.open(SAMPLES / "masks" / src.name).convert("L").resize(size[::-1], Image.NEAREST))
            Image.fromarray(((m >= 128) * 255).astype(np.uint8)).save(masks / f"P{i:05d}_L_DM_CC.png")


def _timed(cmd: list[str]) -> tuple[float, float, float]:
    """Run a child process; its wall seconds, CPU seconds (user + system) and peak RSS in GB (the child
    and the workers it waited for)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO / "src")}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, 3):
        raise RuntimeError(f"{' '.join(cmd)} failed")
    return time.perf_counter() - t, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1e6


def _modise(*args: str) -> list[str]:
    return [sys.executable, "-m", "modise", *args]


def _tiny_model(root: Path) -> Path:
    code = ("from modise.model import build_model; from modise.data.panoptic import Category; "
            "build_model('m-odise', 'tiny', categories=[Category(1, 'benign', 1), Category(2, 'malignant', 1)], "
            "overrides={'inference': {'object_mask_threshold': 0.0, 'overlap_threshold': 0.0}})"
            f".save_pretrained({str(root / 'model')!r})")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO / "src")}, check=True)
    return root / "model"


def _pil_roundtrip(folder: Path) -> tuple[float, float]:
    """Wall and CPU seconds per image for PIL to decode and re-encode (default PNG settings) the images of ``folder``."""
    from PIL import Image

    files = sorted(folder.glob("*.png"))
    t, c = time.perf_counter(), time.process_time()
    for f in files:
        with Image.open(f) as im:
            im.load()
            im.save(folder.parent / "roundtrip.png")
    return (time.perf_counter() - t) / len(files), (time.process_time() - c) / len(files)


def _exponent(xs: list[float], ts: list[float]) -> float | None:
    """Least-squares slope of log(time) against log(x)."""
    if len(xs) < 2:
        return None
    return float(np.polyfit(np.log(xs), np.log(ts), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="512x512,1024x1024,2048x2048,3328x4096", help="HxW image sizes")
    ap.add_argument("--images", type=int, default=4, help="images per size")
    ap.add_argument("--counts", default="300,3000", help="archive sizes for evaluate (256x256 images), e.g. 300,3000,30000")
    ap.add_argument("--workers", default="1,2", help="worker counts for prepare and predict")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    workers = [int(w) for w in a.workers.split(",")]
    root = a.workdir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    model = _tiny_model(root)
    rows: list[dict] = []
    # predict's start-up (imports, model build, output folder) once, on one small image: subtracted from each
    # predict run, so s/image is what one more image of the archive costs
    _images(root / "warm" / "images", 1, (256, 256))
    start_wall, start_cpu, _ = _timed(_modise("predict", "--checkpoint", str(model), "--input", str(root / "warm" / "images"),
                                              "--out", str(root / "warm" / "pred"), "--device", a.device, "--overwrite"))
    print(f"predict start-up: {start_wall:.1f} s wall, {start_cpu:.1f} CPU s", flush=True)
    for h, w in sizes:
        d = root / f"{h}x{w}"
        _images(d / "images", a.images, (h, w), d / "masks")
        base = {"size": f"{h}x{w}", "pixels": h * w, "images": a.images}
        wall, cpu = _pil_roundtrip(d / "images")
        rows.append({**base, "stage": "PIL decode+encode", "workers": 1, "s_per_image": wall, "cpu_per_image": cpu, "peak_gb": None})
        for n in workers:
            out = d / f"prep{n}"
            secs, cpu, gb = _timed(_modise("prepare", "folder", "--images", str(d / "images"), "--masks", str(d / "masks"),
                                           "--out", str(out), "--workers", str(n), "-q", "--overwrite"))
            rows.append({**base, "stage": "prepare", "workers": n, "s_per_image": secs / a.images,
                         "cpu_per_image": cpu / a.images, "peak_gb": gb})
            out = d / f"pred{n}"
            secs, cpu, gb = _timed(_modise("predict", "--checkpoint", str(model), "--input", str(d / "images"), "--out", str(out),
                                           "--batch-size", str(a.batch_size), "--workers", str(n), "--device", a.device, "--overwrite"))
            rows.append({**base, "stage": "predict", "workers": n, "s_per_image": max(secs - start_wall, 0) / a.images,
                         "cpu_per_image": max(cpu - start_cpu, 0) / a.images, "peak_gb": gb})
            print(rows[-1], flush=True)
        shutil.rmtree(d)
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_evaluate import make_folders

    for n in [int(c) for c in a.counts.split(",")]:
        d = root / f"eval{n}"
        gt, pred = make_folders(d, n, 256)
        secs, cpu, gb = _timed(_modise("evaluate", "--gt", str(gt), "--pred", str(pred), "--out", str(d / "report"), "--overwrite"))
        rows.append({"size": "256x256", "pixels": 256 * 256, "images": n, "stage": "evaluate", "workers": 1,
                     "s_per_image": secs / n, "cpu_per_image": cpu / n, "peak_gb": gb})
        shutil.rmtree(d)
    print(f"predict rows: start-up ({start_wall:.1f} s wall, {start_cpu:.1f} CPU s) subtracted")
    print(f"{'stage':<18}{'size':>11}{'images':>8}{'workers':>8}{'img/s':>9}{'s/img':>9}{'CPU s/img':>10}{'peak GB':>9}")
    for r in rows:
        gb = f"{r['peak_gb']:.2f}" if r["peak_gb"] is not None else "-"
        rate = f"{1 / r['s_per_image']:.2f}" if r["s_per_image"] > 0 else "-"
        print(f"{r['stage']:<18}{r['size']:>11}{r['images']:>8}{r['workers']:>8}{rate:>9}"
              f"{r['s_per_image']:>9.2f}{r['cpu_per_image']:>10.2f}{gb:>9}")
    for stage in ("prepare", "predict"):
        for n in workers:
            sel = [r for r in rows if r["stage"] == stage and r["workers"] == n]
            e = _exponent([r["pixels"] for r in sel], [max(r["s_per_image"], 1e-3) for r in sel])
            if e is not None:
                print(f"growth: {stage} (workers {n}) time per image ~ pixels^{e:.2f}")
    ev = [r for r in rows if r["stage"] == "evaluate"]
    e = _exponent([r["images"] for r in ev], [r["s_per_image"] * r["images"] for r in ev])
    if e is not None:
        print(f"growth: evaluate total time ~ images^{e:.2f}")
    big = [r for r in rows if r["size"] == "3328x4096" and r["stage"] in ("prepare", "predict")]
    for r in big:
        print(f"projection: 20,000 images of 3328x4096, {r['stage']} with {r['workers']} worker(s): "
              f"{20000 * r['s_per_image'] / 3600:.1f} h")
    for r in big:
        pil = next(p for p in rows if p["size"] == r["size"] and p["stage"] == "PIL decode+encode")
        print(f"ratio to PIL decode+encode, {r['stage']} with {r['workers']} worker(s): {r['s_per_image'] / pil['s_per_image']:.1f}x wall, "
              f"{r['cpu_per_image'] / pil['cpu_per_image']:.1f}x CPU")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    if a.workdir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
