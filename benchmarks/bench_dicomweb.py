"""Benchmark: a study over DICOMweb against the same images from a folder, and memory against study size.

A real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``, started as the tests start it, on a free port
of 127.0.0.1) holds a study of ``--images`` MG DICOMs made from the real sample mammograms (resized to
``--size``); the same files sit in a folder. Each run is its own ``modise predict`` process with a tiny
random-weight M-ODISE (the model costs little, so what DICOMweb adds shows), SEG and SR written in both
(``--dicom`` for the folder; on by default over DICOMweb):

- folder: ``predict --input FOLDER --dicom``
- DICOMweb: ``predict --input http://127.0.0.1:PORT/dicom-web --query StudyInstanceUID=...``
- DICOMweb + ``--store`` (each SEG and SR back by STOW-RS)
- peak RSS of the DICOMweb run for studies of each of ``--counts`` images (it must not grow with them)

    python benchmarks/bench_dicomweb.py [--images 20] [--size 2048x1664] [--counts 5,10,20] [--repeats 3] [--device cpu]

Goal (issue 27): DICOMweb wall time at most 1.3x the folder's; peak RSS flat in the study's size.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests"), str(REPO / "src")]

from bench_scale import _modise, _timed, _tiny_model  # noqa: E402
from orthanc_server import PASSWORD, USER, orthanc_available, start_orthanc  # noqa: E402


def _study(folder: Path, n: int, size: tuple[int, int]) -> str:
    """``n`` MG DICOMs (one study) from the sample mammograms in ``folder``; the study UID."""
    from dicomweb_fixtures import mg_study

    srcs = sorted((REPO / "src" / "modise" / "assets" / "samples" / "images").glob("*.jpg"))
    uid, _ = mg_study(folder, [srcs[i % len(srcs)] for i in range(n)], size=size)
    return uid


def _read_costs(folder: Path, url: str, study: str, repeats: int) -> dict[str, float]:
    """Seconds per image, best of ``repeats``, to read the study as ``predict`` does: from the folder
    (``read_image``) and over DICOMweb (``read_item``: WADO-RS retrieve + decode), in this process, so a
    busy machine's noise stays out of what DICOMweb itself adds."""
    import time

    from modise.data.imageio import read_image
    from modise.engine.prediction.inputs import collect_remote, read_item

    files = sorted(folder.glob("*.dcm"))
    items, _ = collect_remote(url, {"StudyInstanceUID": study})
    best = {"folder": float("inf"), "dicomweb": float("inf")}
    for _ in range(repeats):
        for kind, read, xs in (("folder", read_image, files), ("dicomweb", read_item, items)):
            t = time.perf_counter()
            for x in xs:
                read(x)
            best[kind] = min(best[kind], (time.perf_counter() - t) / len(xs))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20, help="images in the study")
    ap.add_argument("--size", default="2048x1664", help="HxW of each image")
    ap.add_argument("--counts", default="5,10,20", help="study sizes for the peak-RSS rows")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="folder and DICOMweb runs each (the median is compared)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    why = orthanc_available()
    if why:
        sys.exit(f"bench_dicomweb: {why}")
    size = tuple(int(v) for v in a.size.split("x"))
    counts = sorted({int(c) for c in a.counts.split(",")} | {a.images})
    root = a.workdir or Path(tempfile.mkdtemp(prefix="bench-dicomweb-"))
    model = _tiny_model(root)
    orthanc = start_orthanc(root / "orthanc")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops Orthanc (finally below)
    os.environ.update({"MODISE_DICOMWEB_USER": USER, "MODISE_DICOMWEB_PASSWORD": PASSWORD})
    rows: list[dict] = []
    try:
        studies = {}
        for n in counts:
            folder = root / f"study{n}"
            studies[n] = _study(folder, n, size)
            for f in sorted(folder.glob("*.dcm")):
                orthanc.upload(f)

        def predict(label: str, n: int, *args: str) -> dict:
            out = root / "out" / f"{label}{n}"
            wall, cpu, gb = _timed(_modise("predict", "--checkpoint", str(model), "--out", str(out), "--device", a.device,
                                           "--no-overlays", "--overwrite", *args))
            summary = json.loads((out / "summary.json").read_text())
            row = {"run": label, "images": n, "predicted": summary["done"], "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                   "peak_gb": round(gb, 3), "stored": summary.get("stored")}
            print(row, flush=True)
            rows.append(row)
            return row

        reads = _read_costs(root / f"study{a.images}", orthanc.dicomweb, studies[a.images], a.repeats)
        print(f"read per image: folder {1e3 * reads['folder']:.1f} ms, DICOMweb {1e3 * reads['dicomweb']:.1f} ms", flush=True)
        query = lambda n: ["--input", orthanc.dicomweb, "--query", f"StudyInstanceUID={studies[n]}"]  # noqa: E731
        n = a.images
        predict("warm-up folder", counts[0], "--input", str(root / f"study{counts[0]}"), "--dicom")  # imports, page cache
        walls: dict[str, list[float]] = {"folder": [], "dicomweb": []}
        for _ in range(a.repeats):  # alternated: a shared machine's slow spells hit both
            walls["folder"].append(predict("folder", n, "--input", str(root / f"study{n}"), "--dicom")["wall_s"])
            walls["dicomweb"].append(predict("dicomweb", n, *query(n))["wall_s"])
        stored = predict("dicomweb --store", n, *query(n), "--store")
        for c in counts:
            if c != n:
                predict("dicomweb", c, *query(c))
        folder, remote = statistics.median(walls["folder"]), statistics.median(walls["dicomweb"])
        ratio, ratio_store = remote / folder, stored["wall_s"] / folder
        rss = {r["images"]: r["peak_gb"] for r in rows if r["run"] == "dicomweb"}
        print(f"\n{n} images {a.size}, median of {a.repeats}: folder {folder:.1f} s, DICOMweb {remote:.1f} s = {ratio:.2f}x "
              f"(goal <= 1.3x); with --store {stored['wall_s']:.1f} s = {ratio_store:.2f}x; peak RSS by study size: "
              + ", ".join(f"{k} images {v:.2f} GB" for k, v in sorted(rss.items())))
        if a.json:
            a.json.write_text(json.dumps({"size": a.size, "rows": rows, "ratio": ratio, "ratio_store": ratio_store,
                                          "read_s_per_image": reads}, indent=2))
    finally:
        orthanc.stop()


if __name__ == "__main__":
    main()
