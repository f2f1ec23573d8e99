"""Measure pseudo-mask Dice vs radiologist masks and conversion speed.

Recipes: the box itself, ``paper`` (the M-ODISE paper's blur sigma 7 + Otsu + concave hull,
``prepare vindr --pseudo-mask paper``, the default) and ``refined`` (modise's, ``--pseudo-mask refined``).

Run: python benchmarks/bench_prepare.py [--sample src/modise/assets/samples] [--n 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from modise.data import pseudomask as pm
from modise.data.imageio import read_image

REPO = Path(__file__).resolve().parents[1]


def pseudo_mask_dice(sample: Path) -> dict:
    scores: dict[str, list[float]] = {"box": [], "paper": [], "refined": []}
    for p in sorted((sample / "images").glob("*.jpg")):
        img = read_image(p).pixels
        mask = np.asarray(Image.open(sample / "masks" / p.name).convert("L")) >= 128
        for box, comp in pm.lesion_boxes(mask):
            scores["box"].append(pm.dice(pm.box_mask(mask.shape, box), comp))
            for recipe in pm.RECIPES:
                scores[recipe].append(pm.dice(pm.recipe_mask(recipe, img, box), comp))
    return {"lesions": len(scores["box"]), **{k: round(float(np.mean(v)), 4) for k, v in scores.items()}}


def conversion_speed(n: int) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    import data_fixtures as fx

    from modise.data.cdd_cesm import prepare_cdd_cesm
    from modise.data.phantoms import prepare_synthetic
    from modise.data.vindr import prepare_vindr

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        prepare_synthetic(tmp / "syn", n=n, seed=0, size=256, quiet=True)
        out["synthetic_256px_images_per_s"] = round(n / (time.perf_counter() - t), 2)
        # VinDr-like: 512x512 16-bit DICOMs (half JPEG 2000) with one box each
        root = tmp / "vindr"
        rows = [fx.VINDR_COLUMNS]
        rng = np.random.default_rng(0)
        m = max(n // 4, 4)
        for i in range(m):
            px = fx.blob_image(512, 512, centres=((256, 256, 40),), seed=i).astype(np.float64) * 16
            fx.write_dicom(root / "images" / f"s{i}" / f"im{i}.dicom", px, compress_j2k=i % 2 == 1)
            x0, y0 = 206 + rng.integers(-5, 5), 206 + rng.integers(-5, 5)
            rows.append(f"s{i},x,im{i},L,CC,512,512,BI-RADS 4,DENSITY C,\"['Mass']\",BI-RADS 4,{x0},{y0},{x0 + 100},{y0 + 100},training")
        (root / "finding_annotations.csv").write_text("\n".join(rows) + "\n")
        t = time.perf_counter()
        prepare_vindr(root, tmp / "vo", quiet=True)
        out["vindr_512px_dicom_images_per_s"] = round(m / (time.perf_counter() - t), 2)
        # CDD-CESM: the fixture release, replicated
        croot = fx.make_cdd_cesm(tmp / "cdd")
        t = time.perf_counter()
        rep = prepare_cdd_cesm(croot, tmp / "co", quiet=True)
        out["cdd_cesm_fixture_images_per_s"] = round(rep["converted"] / (time.perf_counter() - t), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=Path, default=REPO / "src" / "modise" / "assets" / "samples")
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args()
    result = {"pseudo_mask_dice": pseudo_mask_dice(args.sample), "conversion": conversion_speed(args.n)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
