"""Benchmark: does ``modise predict`` cost what its model costs? Per image at real mammogram size:

- the model's own time: the forward pass (features, mask decoding, class head) on the resized and
  padded image, as the pipeline calls it, synchronised on a GPU, after one warm-up image;
- ``modise predict``'s time: a run over N images minus a run over 1 (start-up, imports and model
  building cancel), so it is what one more image of an archive costs (read, resize, forward,
  post-processing, writing).

The goal (docs/how-to/gpus.md, docs/benchmarks.md): on a GPU, predict within 1.5x of the model's own time per image.

    python benchmarks/bench_predict.py --device cuda --preset m-odise --size full [--images 8]
        [--height 4096 --width 3328] [--batch-size 2] [--workers 8]
    python benchmarks/bench_predict.py --device cpu --size tiny --images 4     # smoke run, no GPU

Random weights (offline): the timing does not depend on them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "modise" / "assets" / "samples"


def _images(folder: Path, n: int, height: int, width: int) -> list[Path]:
    """``n`` real sample mammograms resized to ``height`` x ``width`` as PNG."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    srcs = sorted((SAMPLES / "images").glob("*.jpg"))
    out = []
    for i in range(n):
        p = folder / f"P{i:05d}_L_DM_CC.png"
        Image.open(srcs[i % len(srcs)]).convert("L").resize((width, height), Image.BILINEAR).save(p, compress_level=1)
        out.append(p)
    return out


def _predict_seconds(model: Path, inputs: Path, out: Path, a: argparse.Namespace) -> float:
    cmd = [sys.executable, "-m", "modise", "predict", "--checkpoint", str(model), "--input", str(inputs), "--out", str(out),
           "--device", a.device, "--batch-size", str(a.batch_size), "--workers", str(a.workers), "--overwrite"]
    t = time.perf_counter()
    r = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(REPO / "src")}, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"predict failed: {r.stderr[-2000:]}")
    return time.perf_counter() - t


def _model_seconds(model: Path, images: list[Path], device: str) -> tuple[float, tuple[int, int]]:
    """Mean forward time per image (after one warm-up) and the padded size it ran at."""
    import torch

    from modise.data.imageio import read_image
    from modise.pipeline import ModisePipeline, resized_shape

    pipe = ModisePipeline.from_pretrained(model, device=device)
    s = pipe.config.inference_settings()
    times = []
    for i, path in enumerate([images[0], *images]):
        px = read_image(path).pixels
        h, w = resized_shape(*px.shape, s.image_size, s.max_size)
        x = torch.nn.functional.interpolate(torch.from_numpy(px)[None, None], size=(h, w), mode="bilinear", antialias=True)
        x = pipe.model.pad(x.expand(-1, 3, -1, -1).to(pipe.device))
        if pipe.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            pipe.model.eval()(x)
        if pipe.device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first image warms up (allocator, kernels)
            times.append(time.perf_counter() - t)
    return sum(times) / len(times), tuple(x.shape[-2:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="m-odise")
    ap.add_argument("--size", default="full", choices=("full", "tiny"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--height", type=int, default=4096)
    ap.add_argument("--width", type=int, default=3328)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1, help="predict's writer processes")
    ap.add_argument("--goal", type=float, default=1.5, help="predict / model time per image to pass")
    a = ap.parse_args()
    if a.images < 2:
        raise SystemExit("--images must be at least 2 (predict's per-image cost is the difference of two runs).")
    from modise.data.panoptic import Category
    from modise.model import build_model

    root = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    model = build_model(a.preset, a.size, random_weights=True, categories=[Category(1, "benign", 1), Category(2, "malignant", 1)])
    model_dir = model.save_pretrained(root / "model")
    del model
    images = _images(root / "all", a.images, a.height, a.width)
    (root / "one").mkdir()
    os.link(images[0], root / "one" / images[0].name)
    model_s, padded = _model_seconds(model_dir, images, a.device)
    one = _predict_seconds(model_dir, root / "one", root / "p1", a)
    many = _predict_seconds(model_dir, root / "all", root / "pn", a)
    per_image = (many - one) / (a.images - 1)
    ratio = per_image / model_s
    print(f"{a.preset} ({a.size}) on {a.device}, {a.height}x{a.width} images (model input {padded[0]}x{padded[1]}), "
          f"batch {a.batch_size}, {a.workers} writer process(es)")
    print(f"model forward: {model_s:.3f} s / image")
    print(f"modise predict: {per_image:.3f} s / image ({one:.1f} s for 1 image, {many:.1f} s for {a.images})")
    print(f"predict / model: {ratio:.2f}x  (goal <= {a.goal:g}x: {'met' if ratio <= a.goal else 'NOT met'})")


if __name__ == "__main__":
    main()
