"""Benchmark: full-size M-ODISE (random weights) on CPU fp32 at 512x512.

Goals (issue 4): end to end <= 1.5x the frozen VAE-encode + UNet forward, peak RSS <= 8 GB.
Run: ``python benchmarks/bench_model.py [--preset m-odise] [--size full] [--image-size 512]``
(or ``modise benchmark ... --json``). Builds one full-size model; needs ~6 GB of RAM.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="m-odise")
    ap.add_argument("--size", default="full")
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    from modise.model import build_model
    from modise.model.benchmark import benchmark_model

    model = build_model(args.preset, args.size, random_weights=True)
    res = benchmark_model(model, args.image_size, args.repeats)
    res["goal_overhead_ratio_met"] = res["overhead_ratio"] <= 1.5
    res["goal_peak_rss_met"] = res["peak_rss_mb"] <= 8192
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
