"""The training input path at real size: one sample read, LSJ'd and turned into masks, as the loader does it.

The sample mammograms, upscaled to 3328x4096 16-bit PNGs (a full-field digital mammogram's size) with
their lesion masks, are prepared as a dataset (`modise prepare folder`); then each sample is read
(image + panoptic PNG), flipped/scaled/cropped to ``--size`` (ODISE's LSJ, 0.1-2.0) and its masks built,
in this process on one thread. Prints seconds per sample (median), what reading alone costs, and the
peak RSS. Run on an idle machine:

    python benchmarks/bench_train_input.py [--size 1024] [--samples 12]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "modise" / "assets" / "samples"
FULL = (4096, 3328)  # rows, columns


def real_size_dataset(work: Path, n: int = 4) -> Path:
    """``n`` sample mammograms at 3328x4096, 16 bit, with binary masks -> a prepared dataset."""
    (work / "img").mkdir(), (work / "mask").mkdir()
    for p in sorted((SAMPLES / "images").glob("*.jpg"))[:n]:
        name = p.with_suffix(".png").name
        img = Image.open(p).convert("L").resize(FULL[::-1], Image.BILINEAR)
        Image.fromarray(np.asarray(img).astype(np.uint16) * 257).save(work / "img" / name)
        mask = np.asarray(Image.open(SAMPLES / "masks" / p.name).convert("L").resize(FULL[::-1], Image.NEAREST)) > 127
        Image.fromarray(mask.astype(np.uint8) * 255).save(work / "mask" / name)
    out = work / "ds"
    subprocess.run([sys.executable, "-m", "modise", "prepare", "folder", "--images", str(work / "img"), "--masks",
                    str(work / "mask"), "--out", str(out), "--folds", "2", "-q", "--workers", "1"], check=True,
                   capture_output=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024, help="LSJ crop (ODISE: 1024)")
    ap.add_argument("--samples", type=int, default=12)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)  # a loader worker's share
    from modise.data.imageio import read_image
    from modise.engine.training.datamodule import PanopticDataModule

    with tempfile.TemporaryDirectory() as tmp:
        root = real_size_dataset(Path(tmp))
        dm = PanopticDataModule(root, None, image_size=args.size, batch_size=2, intensity=False, accelerator="cpu")
        dm.trainer = None
        dm.setup()
        ds = dm.train_set
        ds[0]  # warm-up
        reads, samples = [], []
        for i in range(args.samples):
            t = time.perf_counter()
            read_image(root / "images" / ds._images[ds.image_ids[i % len(ds)]]["file_name"])
            reads.append(time.perf_counter() - t)
            t = time.perf_counter()
            s = ds[i % len(ds)]
            samples.append(time.perf_counter() - t)
        assert s["image"].shape == (1, args.size, args.size) and s["masks"].shape[1:] == (args.size, args.size)
    row = {"size": args.size, "samples": args.samples, "read_image_s": round(statistics.median(reads), 3),
           "sample_s": round(statistics.median(samples), 3),
           "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}
    print(json.dumps(row) if args.json else
          f"3328x4096 -> LSJ {args.size}: {row['sample_s'] * 1000:.0f} ms a sample (reading the image alone "
          f"{row['read_image_s'] * 1000:.0f} ms), peak RSS {row['peak_rss_gb']} GB, one thread")


if __name__ == "__main__":
    main()
