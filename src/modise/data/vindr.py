"""VinDr-Mammo -> canonical panoptic layout, with box pseudo-masks.

``finding_annotations.csv`` (one row per finding: ``study_id, image_id, laterality,
view_position, height, width, breast_birads, breast_density, finding_categories``
(a Python-list string), ``finding_birads, xmin, ymin, xmax, ymax, split``) and
``images/<study_id>/<image_id>.dicom``. DICOMs are windowed to 8-bit PNG; each box
(clipped to the image) becomes one segment: by default the paper's recipe (blur sigma 7,
Otsu, concave hull: :func:`modise.data.pseudomask.bare_pseudo_mask`), or with
``pseudo_mask="refined"`` modise's :func:`modise.data.pseudomask.pseudo_mask`;
the class is the row's ``finding_birads``. Rows with a box but no grade are skipped and
counted; rows of other grades are counted and left out.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.common import find_child, resize_mask, resize_pixels, resize_plan, spacing_after_resize
from modise.data.panoptic import Category
from modise.errors import ModiseError

DEFAULT_CLASSES = ("BI-RADS 3", "BI-RADS 4", "BI-RADS 5")
_MEANING = {
    "2": "a benign finding",
    "3": "a probably benign lesion",
    "4": "a suspicious lesion",
    "5": "a highly suspicious malignant lesion",
}


def birads_name(value: Any) -> str | None:
    """'BI-RADS 4' / 'bi-rads4' / '4' / 4.0 -> 'BI-RADS 4'; None for empty values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    s = str(value).strip()
    if not s or s.lower() in ("nan", "none"):
        return None
    m = re.search(r"(\d[abc]?)", s, flags=re.IGNORECASE)
    return f"BI-RADS {m.group(1).upper()}" if m else None


def categories_for(classes: list[str]) -> list[Category]:
    cats = []
    for i, name in enumerate(classes, start=1):
        grade = name.split()[-1]
        prompts = [f"a {name} lesion in a mammogram"]
        if grade in _MEANING:
            prompts.append(f"{_MEANING[grade]} in a mammogram")
        cats.append(Category(i, name, 1, prompts))
    return cats


def parse_categories(text: Any) -> list[str]:
    """VinDr's Python-list string "['Mass', 'Suspicious Calcification']" -> list."""
    if isinstance(text, list):
        return [str(t) for t in text]
    try:
        v = ast.literal_eval(str(text))
        return [str(t) for t in v] if isinstance(v, (list, tuple)) else [str(v)]
    except (ValueError, SyntaxError):
        return [str(text)] if str(text).strip() else []


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def prepare_vindr(
    root: str | Path,
    out: str | Path,
    classes: list[str] | None = None,
    sigma: float = 7.0,
    include_normal: bool = False,
    max_size: int | None = None,
    strict: bool = False,
    overwrite: bool = False,
    k: int = 5,
    seed: int = 0,
    quiet: bool = False,
    pseudo_mask: str = "paper",
    workers: int | None = 1,
) -> dict[str, Any]:
    """Convert a VinDr-Mammo release folder; returns the prepare report.

    ``pseudo_mask``: "paper" (the M-ODISE paper's bare recipe) or "refined" (modise's). ``workers``: processes
    reading the DICOMs (None: all cores); the output is the same for any number.
    """
    import pandas as pd

    from modise.data.parallel import convert_items
    from modise.data.pseudomask import RECIPES
    from modise.data.writer import DatasetWriter, encode_image
    from modise.progress import track
    from modise.outputs import check_output_dir, output_dir

    root = Path(root)
    if pseudo_mask not in RECIPES:
        raise ModiseError(f"--pseudo-mask must be one of {', '.join(RECIPES)}, not '{pseudo_mask}'.")
    check_output_dir(out, overwrite, [root])
    names = [birads_name(c) for c in (classes or DEFAULT_CLASSES)]
    if any(n is None for n in names):
        raise ModiseError(f"--classes must be BI-RADS grades like 'BI-RADS 4' or '4', got {classes}.")
    names = list(dict.fromkeys(names))
    cats = categories_for(names)
    cat_of = {c.name: c.id for c in cats}
    csv = find_child(root, "finding_annotations.csv", "*finding*.csv")
    images_dir = find_child(root, "images")
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except Exception as e:
        raise ModiseError(f"{csv}: cannot read the CSV ({type(e).__name__}: {e}).") from None
    df.columns = [str(c).strip() for c in df.columns]
    need = {"study_id", "image_id", "finding_birads", "xmin", "ymin", "xmax", "ymax"}
    if need - set(df.columns):
        raise ModiseError(f"{csv}: missing column(s) {sorted(need - set(df.columns))}.")
    groups: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
    for i, row in enumerate(df.to_dict("records"), start=2):
        groups.setdefault((row["study_id"].strip(), row["image_id"].strip()), []).append((i, row))
    counts = {"rows_without_birads": 0, "rows_other_grade": 0, "images_without_chosen_finding": 0}
    with output_dir(out, overwrite, [root]) as stage:
        w = DatasetWriter(stage, cats, source="vindr", strict=strict, quiet=quiet)
        ctx = dict(cat_of=cat_of, csv=csv, images_dir=images_dir, include_normal=include_normal, max_size=max_size,
                   sigma=sigma, pseudo_mask=pseudo_mask)
        convert_items(_vindr_item, ctx, track(list(groups.items()), "VinDr-Mammo", enabled=not quiet), w, workers,
                      on_note=lambda key, _: counts.__setitem__(key, counts[key] + 1), encode=encode_image)
        return w.finish(k=k, seed=seed, sigma=sigma, pseudo_mask=pseudo_mask, classes=names, **counts)


def _vindr_item(ctx: dict[str, Any], item: tuple, w: Any) -> None:
    """One image of the CSV (its study, image and rows): read, pseudo-masks, ``w.add`` (or skip);
    runs in a worker process (:func:`modise.data.parallel.convert_items`)."""
    from modise.data.imageio import read_image
    from modise.data.pseudomask import clip_box, recipe_mask

    (study, image), rows = item
    cat_of, csv, images_dir = ctx["cat_of"], ctx["csv"], ctx["images_dir"]
    include_normal, max_size, sigma, pseudo_mask = ctx["include_normal"], ctx["max_size"], ctx["sigma"], ctx["pseudo_mask"]
    kept: list[tuple[int, tuple[float, float, float, float], str]] = []
    for row_no, row in rows:
        box = [_float(row[c]) for c in ("xmin", "ymin", "xmax", "ymax")]
        has_box = all(b is not None for b in box)
        grade = birads_name(row["finding_birads"])
        if grade is None:
            if has_box:
                w.note("rows_without_birads")
                w.skip(csv.name, f"{image}: finding with a box but no finding_birads", row=row_no)
            continue
        if grade not in cat_of:
            w.note("rows_other_grade")
            continue
        if not has_box:
            w.skip(csv.name, f"{image}: {grade} finding without a box", row=row_no)
            continue
        kept.append((row_no, tuple(box), grade))  # type: ignore[arg-type]
    if not kept and not include_normal:
        w.note("images_without_chosen_finding")
        return
    path = images_dir / study / f"{image}.dicom"
    rel = f"images/{study}/{image}.dicom"
    if not path.is_file() and path.with_suffix(".dcm").is_file():
        path = path.with_suffix(".dcm")
    try:
        loaded = read_image(path)
    except ModiseError as e:
        w.skip(rel, str(e).removeprefix(f"{path}: "))
        return
    px = loaded.pixels
    h, wd = px.shape
    first = rows[0][1]
    ch, cw = _float(first.get("height")), _float(first.get("width"))
    sy = h / ch if ch else 1.0
    sx = wd / cw if cw else 1.0
    if abs(sy - 1) > 1e-6 or abs(sx - 1) > 1e-6:
        w.warn(f"{rel}: CSV says {cw:.0f}x{ch:.0f} but the DICOM is {wd}x{h}; boxes rescaled.")
    scale = resize_plan(h, wd, max_size)
    oh, ow = (round(h * scale), round(wd * scale)) if scale != 1.0 else (h, wd)
    segments = []
    for row_no, (x0, y0, x1, y1), grade in kept:
        box = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
        if clip_box(box, h, wd) is None:
            w.skip(csv.name, f"{image}: box lies outside the {wd}x{h} image", row=row_no)
            continue
        mask = recipe_mask(pseudo_mask, px, box, sigma=sigma)
        if not mask.any():
            w.skip(csv.name, f"{image}: empty pseudo-mask", row=row_no)
            continue
        segments.append((resize_mask(mask, (oh, ow)) if scale != 1.0 else mask, cat_of[grade]))
    if not segments and not include_normal:
        return
    pixels = resize_pixels(px, scale) if scale != 1.0 else loaded.uint8
    w.add(
        image,
        segments,
        pixels=pixels,
        height=oh,
        width=ow,
        patient_id=study,
        laterality=str(first.get("laterality", "") or loaded.meta.get("laterality", "")).strip(),
        view=str(first.get("view_position", "") or loaded.meta.get("view", "")).strip(),
        modality="MG",
        source_file=rel,
        manufacturer=str(loaded.meta.get("manufacturer", "") or "").strip(),
        pixel_spacing=spacing_after_resize(loaded.meta.get("pixel_spacing"), scale),
        breast_birads=str(first.get("breast_birads", "")).strip(),
        breast_density=str(first.get("breast_density", "")).strip(),
        split=str(first.get("split", "")).strip(),
        finding_categories=sorted({c for _, r in rows for c in parse_categories(r.get("finding_categories", ""))}),
    )
