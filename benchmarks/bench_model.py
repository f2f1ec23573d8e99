"""Benchmark: one preset (default full-size M-ODISE, random weights) per stage, on CPU or a GPU.

Goals (issue 4, CPU fp32 at 512x512): end to end <= 1.5x the frozen forward (``overhead_ratio``: VAE
encode + UNet + VAE decoder taps since issue 29; ``ratio_to_encode_unet`` is the earlier reference), peak
RSS <= 8 GB. Run: ``python benchmarks/bench_model.py [--preset m-odise] [--size full] [--device cpu]
[--precision fp32] [--image-size 512] [--batch-size 1] [--train]`` (or ``modise benchmark ... --json``).
A full-size model needs ~6 GB of RAM.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="m-odise")
    ap.add_argument("--size", default="full")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--repeats", type=int, default=5, help="at most this many timed runs")
    args = ap.parse_args()

    from modise.model import build_model
    from modise.model.benchmark import benchmark_model, resolve_device

    resolve_device(args.device)
    model = build_model(args.preset, args.size, random_weights=True)
    res = benchmark_model(model, args.image_size, args.batch_size, args.device, args.precision, args.train,
                          max_repeats=args.repeats, min_repeats=min(3, args.repeats))
    res["goal_overhead_ratio_met"] = res["overhead_ratio"] <= 1.5
    res["goal_peak_rss_met"] = res["peak_rss_mb"] <= 8192
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
