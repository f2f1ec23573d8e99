"""Time MAM-E synthesis: text-to-image per image and lesion inpainting per lesion.

Random-weight pipelines (the compute of real weights is the same), so it runs offline:

    python benchmarks/bench_synthesis.py --size tiny --steps 4
    python benchmarks/bench_synthesis.py --size full --steps 24   # SD-1.5 sized, 512x512

Prints one JSON line per measurement (seconds, mean of --repeat runs after a warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _time(fn, repeat: int) -> float:
    fn()  # warm-up (allocations, kernels)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="tiny", choices=["tiny", "full"])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    import numpy as np
    import torch

    from modise.synthesis import generate_images, inpaint_lesion, load_inpaint, load_text2img
    from modise.synthesis.pipelines import native_resolution

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    common = dict(size=args.size, steps=args.steps, device=device, threads=torch.get_num_threads())
    pipe = load_text2img(size=args.size, random_weights=True, device=device)
    side = native_resolution(pipe)
    t = _time(lambda: generate_images(pipe, "a siemens mammogram in CC view with high density", 1, 0, args.steps, 5.0, "L"),
              args.repeat)
    print(json.dumps(dict(common, what="generate_per_image", side=side, seconds=round(t, 3))))
    del pipe

    pipe = load_inpaint(size=args.size, random_weights=True, device=device)
    image = np.zeros((2 * side, int(1.5 * side)), np.uint8)  # a native-resolution mammogram stand-in
    image[:, : int(1.2 * side)] = 140
    for mode in ("whole", "crop"):  # MAM-E's whole-image frame (default) and the native-resolution window
        t = _time(lambda: inpaint_lesion(pipe, image, auto_box=True, seed=0, steps=args.steps, mode=mode), args.repeat)
        print(json.dumps(dict(common, what=f"inpaint_per_lesion_{mode}", side=side, image=list(image.shape),
                              seconds=round(t, 3))))
    # Whole mode on a 4000x3000 mammogram: framing, box draw and full-resolution paste-back around the model.
    big = np.zeros((4000, 3000), np.uint8)
    big[:, :2400] = 140
    t = _time(lambda: inpaint_lesion(pipe, big, auto_box=True, seed=0, steps=args.steps), args.repeat)
    print(json.dumps(dict(common, what="inpaint_whole_4000x3000", side=side, seconds=round(t, 3))))


if __name__ == "__main__":
    main()
