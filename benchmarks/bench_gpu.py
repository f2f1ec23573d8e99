"""Issue 12's table ("Correct and fast on a GPU") for m-odise, odise and m2f-swinl.

On a CUDA GPU (full size, random weights): training img/s and peak memory at batch 8, inference
s/image in fp32 and bf16 with the ratio to the frozen forward (VAE encode + UNet; Swin for
m2f-swinl), 2x-side inference (windows batched) against the 1x cost, and the model build time.
Without CUDA it runs the same rows on the CPU (use ``--size tiny``) and marks the GPU goals
"unmeasured: no CUDA".

Run: ``python benchmarks/bench_gpu.py [--size full] [--presets m-odise odise m2f-swinl]
[--image-size 512] [--train-batch 8] [--json]``
"""

from __future__ import annotations

import argparse
import json
import time


def _rows(preset: str, size: str, device: str, image_size: int, train_batch: int, repeats: int) -> list[dict]:
    import torch

    from modise.model import build_model
    from modise.model.benchmark import benchmark_model

    cuda = device == "cuda"
    kw = dict(device=device, max_repeats=repeats, min_repeats=min(3, repeats))
    t = time.perf_counter()
    model = build_model(preset, size, random_weights=True)
    build_s = time.perf_counter() - t
    train = benchmark_model(model, image_size, train_batch, precision="bf16" if cuda else "fp32", train=True, **kw)
    fp32 = benchmark_model(model, image_size, 1, precision="fp32", **kw)
    bf16 = benchmark_model(model, image_size, 1, precision="bf16", **kw)
    big = benchmark_model(model, 2 * image_size, 1, precision="bf16", **kw)
    del model
    if cuda:
        torch.cuda.empty_cache()

    def verdict(ok: bool) -> str:
        return ("met" if ok else "NOT met") if cuda else "unmeasured: no CUDA"

    n = image_size
    speedup = fp32["seconds_per_image"] / max(bf16["seconds_per_image"], 1e-9)
    big_ratio = big["seconds_per_image"] / max(bf16["seconds_per_image"], 1e-9)
    mem = f", {train['peak_cuda_mb'] / 1024:.1f} GiB peak" if train["peak_cuda_mb"] else f", RSS {train['peak_rss_mb']:.0f} MB"
    return [
        dict(what=f"train, batch {train_batch}, {n}²", measured=f"{train['images_per_second']:.1f} img/s{mem}",
             goal="≥ 25 img/s at batch 8", verdict=verdict(train["images_per_second"] >= 25)),
        dict(what=f"inference {n}² fp32", measured=f"{fp32['seconds_per_image']:.3f} s/img = "
             f"{fp32['overhead_ratio']:.2f}× the frozen forward ({fp32['diffusion_seconds_per_image']:.3f} s; "
             f"{fp32['ratio_to_encode_unet']:.2f}× VAE encode + UNet alone)",
             goal="≤ 1.25× that forward", verdict=verdict(fp32["overhead_ratio"] <= 1.25)),
        dict(what=f"inference {n}² bf16", measured=f"{bf16['seconds_per_image']:.3f} s/img = {speedup:.2f}× faster than fp32",
             goal="bf16 ≥ 1.6× faster than fp32", verdict=verdict(speedup >= 1.6)),
        dict(what=f"inference {2 * n}² bf16 (windows batched)", measured=f"{big['seconds_per_image']:.3f} s/img = "
             f"{big_ratio:.2f}× the {n}² cost", goal=f"≤ 3× the {n}² cost", verdict=verdict(big_ratio <= 3)),
        dict(what="build (random weights)", measured=f"{build_s:.1f} s", goal="≤ 10 s with local weights",
             verdict=verdict(build_s <= 10)),
        dict(what="`modise benchmark`", measured=f"--device {device}: per-stage seconds", goal="--device, --precision, stages",
             verdict="met"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["m-odise", "odise", "m2f-swinl"])
    ap.add_argument("--size", default=None, help="full | tiny (default: full on CUDA, tiny on CPU)")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    ap.add_argument("--image-size", type=int, default=None, help="default 512 (full) / 128 (tiny)")
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    from modise.model.benchmark import resolve_device

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    resolve_device(device)
    size = args.size or ("full" if device == "cuda" else "tiny")
    n = args.image_size or (512 if size == "full" else 128)
    machine = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    rows = []
    for preset in args.presets:
        for r in _rows(preset, size, device, n, args.train_batch, args.repeats):
            rows.append({"preset": preset, **r})
    if args.json:
        print(json.dumps({"machine": machine, "size": size, "torch": torch.__version__, "rows": rows}, indent=2))
        return
    print(f"{machine}, torch {torch.__version__}, {size} presets, random weights\n")
    print("| preset | what | measured | goal | verdict |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['what']} | {r['measured']} | {r['goal']} | {r['verdict']} |")


if __name__ == "__main__":
    main()
