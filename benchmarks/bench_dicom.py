"""Benchmark: the DICOM SEG + TID 1500 SR of one full-size mammogram (``modise.dicom``).

A real sample mammogram resized to ``--height`` x ``--width`` (default 4096 x 3328, a Hologic DM
image) is written as a valid MG DICOM; its predicted panoptic id map holds ``--instances`` lesions
(the radiologist's mask of the sample, scaled, and disks of 30-400 px radius) of two classes. Reported
per image: the time of each step (findings, SEG build, SEG encode to Part 10 bytes, SR build and
encode), the peak RSS the SEG + SR add over the loaded source and id map, the file sizes, and the
top of a profile of the SEG build (is highdicom's BINARY bit-packing the bottleneck?).

    python benchmarks/bench_dicom.py [--height 4096 --width 3328] [--instances 6] [--profile]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "modise" / "assets" / "samples"
sys.path.insert(0, str(REPO / "tests"))  # the MG DICOM writer the tests use


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS


def _id_map(h: int, w: int, n: int) -> tuple[np.ndarray, list[dict]]:
    from data_fixtures import sample_pixels

    mask = sample_pixels(SAMPLES / "masks" / sorted((SAMPLES / "masks").glob("*.jpg"))[0].name, (h, w)) >= 128
    ids = np.zeros((h, w), np.uint8)
    ids[mask] = 1
    rng = np.random.default_rng(0)
    yy, xx = np.ogrid[:h, :w]
    for i in range(2, n + 1):
        r = int(rng.integers(30, 400))
        cy, cx = int(rng.integers(r, h - r)), int(rng.integers(r, w - r))
        ids[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (ids == 0)] = i
    segs = [{"id": i, "category_id": 1 + i % 2, "score": float(rng.uniform(0.3, 1))} for i in range(1, n + 1)]
    return ids, segs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=4096)
    ap.add_argument("--width", type=int, default=3328)
    ap.add_argument("--instances", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=2, help="build this many times in one process (as predict's "
                    "writer does); each is reported: the first pays highdicom's one-time loading of the standard")
    ap.add_argument("--profile", action="store_true", help="print the top of a cProfile of the (last) SEG build")
    args = ap.parse_args()

    from data_fixtures import sample_pixels, write_mg_dicom

    from modise.data.imageio import read_image
    from modise.data.panoptic import Category
    from modise.dicom.findings import image_findings
    from modise.dicom.seg import build_seg, dataset_bytes
    from modise.dicom.sr import build_sr

    cats = [Category(1, "mass"), Category(2, "calcification")]
    fp = "0" * 64
    with tempfile.TemporaryDirectory() as tmp:
        px = sample_pixels(sorted((SAMPLES / "images").glob("*.jpg"))[0], (args.height, args.width))
        src = read_image(write_mg_dicom(Path(tmp) / "mg.dcm", px)).dataset  # as predict holds it (pixels decoded)
        ids, segs = _id_map(args.height, args.width, args.instances)
        import highdicom  # noqa: F401  imports are not the SEG's cost

        for run in range(1, args.repeat + 1):
            base = _rss_mb("VmRSS")
            _reset_peak()
            t = {"start": time.perf_counter()}
            findings = image_findings(ids, segs, cats, fp, src.SOPInstanceUID)
            t["findings"] = time.perf_counter()
            if args.profile and run == args.repeat:
                import cProfile
                import pstats

                prof = cProfile.Profile()
                seg = prof.runcall(build_seg, src, ids, findings, cats, fp)
            else:
                seg = build_seg(src, ids, findings, cats, fp)
            t["SEG build"] = time.perf_counter()
            seg_bytes = dataset_bytes(seg)
            t["SEG encode"] = time.perf_counter()
            sr_bytes = dataset_bytes(build_sr(src, seg, findings, fp))
            t["SR build+encode"] = time.perf_counter()
            peak = _rss_mb("VmHWM")
            steps = list(t)
            print(f"build {run}: {args.width}x{args.height} MG, {args.instances} instances + {len(cats)} class segments "
                  f"({len(seg.SegmentSequence)} frames of {args.height * args.width / 8 / 2**20:.2f} MiB):")
            for a, b in zip(steps, steps[1:]):
                print(f"  {b:16s} {t[b] - t[a]:7.2f} s")
            print(f"  {'total':16s} {t[steps[-1]] - t['start']:7.2f} s")
            print(f"  peak RSS {peak:.0f} MiB, {peak - base:+.0f} MiB over what the process held before ({base:.0f} MiB)")
            print(f"  SEG {len(seg_bytes) / 2**20:.2f} MiB, SR {len(sr_bytes) / 2**10:.1f} KiB")
            del seg, seg_bytes, sr_bytes
    if args.profile:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(12)


if __name__ == "__main__":
    main()
