"""CDD-CESM -> canonical panoptic layout.

Release layout under ``--root``: ``Low energy images of CDD-CESM/`` (DM) and
``Subtracted images of CDD-CESM/`` (CM) with ``P{n}_{L|R}_{DM|CM}_{CC|MLO}.jpg``,
``Radiology manual annotations.xlsx`` (image-level pathology; ``Type`` says CESM where
names say CM; names may carry stray spaces) and ``Radiology_hand_drawn_segmentations_v2.csv``
(VIA export, one row per region). One region = one instance whose class is the image's
pathology (Benign / Malignant). Normal images are left out unless ``include_normal``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.common import check_raster, find_child, resize_mask, resize_pixels, resize_plan
from modise.data.panoptic import Category
from modise.data.shapes import ShapeError, parse_shape, shape_to_mask
from modise.errors import ModiseError

CATEGORIES = [
    Category(1, "Benign", 1, ["a benign lesion in a mammogram", "a benign breast mass in a mammogram"]),
    Category(2, "Malignant", 1, ["a malignant lesion in a mammogram", "a breast cancer in a mammogram"]),
]
FOLDERS = {"DM": "Low energy images of CDD-CESM", "CM": "Subtracted images of CDD-CESM"}
NAME_RE = re.compile(r"^P(\d+)_([LR])_(DM|CM)_(CC|MLO)$", re.IGNORECASE)


def clean_name(name: Any) -> str:
    """'P2_L_CM_CC .jpg ' -> 'P2_L_CM_CC' (stray spaces and extension removed)."""
    s = re.sub(r"\s+", "", str(name))
    return re.sub(r"\.(jpe?g|png)$", "", s, flags=re.IGNORECASE)


def read_labels(xlsx: Path, problems: list[tuple[int, str]] | None = None) -> dict[str, dict[str, Any]]:
    """Image name -> {pathology, patient_id, row, breast_density} from the annotations workbook.

    ``row`` is the spreadsheet row (header = 1); rows without an image name go to ``problems``.
    """
    import pandas as pd

    try:
        df = pd.read_excel(xlsx, dtype=str)
    except Exception as e:  # openpyxl raises many types for a broken workbook
        raise ModiseError(f"{xlsx}: cannot read the workbook ({type(e).__name__}: {e}).") from None
    df.columns = [re.sub(r"\s+", " ", str(c)).strip() for c in df.columns]
    name_col = next((c for c in df.columns if c.lower().replace(" ", "") == "image_name"), None)
    path_col = next((c for c in df.columns if c.lower().startswith("pathology")), None)
    if name_col is None or path_col is None:
        raise ModiseError(f"{xlsx}: needs the columns 'Image_name' and 'Pathology Classification/ Follow up'.")
    pid_col = next((c for c in df.columns if c.lower().replace(" ", "") == "patient_id"), None)
    density_col = next((c for c in df.columns if c.lower().startswith("breast density")), None)  # "Breast density (ACR)"
    out: dict[str, dict[str, str]] = {}
    for i, (_, row) in enumerate(df.iterrows(), start=2):
        if not isinstance(row[name_col], str) or not row[name_col].strip():
            if problems is not None:
                problems.append((i, "row without an image name"))
            continue
        name = clean_name(row[name_col]).upper()
        pathology = str(row[path_col]).strip().capitalize()
        pid = str(row[pid_col]).strip() if pid_col and isinstance(row[pid_col], str) else ""
        density = str(row[density_col]).strip() if density_col and isinstance(row[density_col], str) else ""
        out[name] = {"pathology": pathology, "patient_id": pid, "row": i, "breast_density": density}
    return out


def read_regions(csv: Path) -> dict[str, list[tuple[int, Any]]]:
    """Image name -> [(csv row number, shape attributes text)] (row numbers as in a spreadsheet, header = 1)."""
    import pandas as pd

    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except Exception as e:
        raise ModiseError(f"{csv}: cannot read the CSV ({type(e).__name__}: {e}).") from None
    df.columns = [str(c).strip() for c in df.columns]
    fcol = next((c for c in df.columns if c.lstrip("#").strip().lower() == "filename"), None)
    if fcol is None or "region_shape_attributes" not in df.columns:
        raise ModiseError(f"{csv}: not a VIA export (needs '#filename' and 'region_shape_attributes').")
    out: dict[str, list[tuple[int, Any]]] = {}
    for i, (fname, shape) in enumerate(zip(df[fcol], df["region_shape_attributes"]), start=2):
        out.setdefault(clean_name(fname).upper(), []).append((i, shape))
    return out


def prepare_cdd_cesm(
    root: str | Path,
    out: str | Path,
    modality: str = "both",
    include_normal: bool = False,
    max_size: int | None = None,
    strict: bool = False,
    overwrite: bool = False,
    k: int = 5,
    seed: int = 0,
    quiet: bool = False,
    workers: int | None = 1,
) -> dict[str, Any]:
    """Convert a CDD-CESM release folder; returns the prepare report. ``workers``: processes reading the
    images (None: all cores); the output is the same for any number."""
    from modise.data.parallel import convert_items
    from modise.data.writer import DatasetWriter, encode_image
    from modise.progress import track
    from modise.outputs import check_output_dir, output_dir

    root = Path(root)
    modality = modality.upper()
    if modality not in ("DM", "CM", "BOTH"):
        raise ModiseError(f"--modality must be DM, CM or both, got '{modality}'.")
    check_output_dir(out, overwrite, [root])
    mods = ["DM", "CM"] if modality == "BOTH" else [modality]
    folders = {m: find_child(root, FOLDERS[m]) for m in mods}
    xlsx = find_child(root, "Radiology manual annotations.xlsx", "*annotations*.xlsx")
    csv = find_child(root, "Radiology_hand_drawn_segmentations_v2.csv", "*segmentation*.csv")
    label_problems: list[tuple[int, str]] = []
    labels = read_labels(xlsx, label_problems)
    regions = read_regions(csv)
    files = sorted((p, m) for m, d in folders.items() for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    cat_of = {c.name: c.id for c in CATEGORIES}
    excluded_normal: list[str] = []
    seen: set[str] = set()
    with output_dir(out, overwrite, [root]) as stage:
        w = DatasetWriter(stage, CATEGORIES, source="cdd-cesm", strict=strict, quiet=quiet)
        ctx = dict(include_normal=include_normal, max_size=max_size, xlsx=xlsx.name, csv=csv.name, cat_of=cat_of)
        items = ((path, mod, labels.get(clean_name(path.name).upper()), regions.get(clean_name(path.name).upper(), []))
                 for path, mod in track(files, "CDD-CESM", enabled=not quiet))
        convert_items(_cdd_item, ctx, items, w, workers,
                      on_note=lambda kind, v: seen.add(v) if kind == "seen" else excluded_normal.append(v), encode=encode_image)
        _skip_rows_without_files(w, labels, label_problems, regions, seen, mods, xlsx.name, csv.name)
        return w.finish(k=k, seed=seed, excluded_normal=len(excluded_normal), excluded_normal_files=excluded_normal,
                        modality=modality.lower())


def _skip_rows_without_files(w: Any, labels: dict[str, dict[str, Any]], label_problems: list[tuple[int, str]],
                             regions: dict[str, list[tuple[int, Any]]], seen: set[str], mods: list[str],
                             xlsx: str, csv: str) -> None:
    """Name every workbook row and region row whose image file is not in the release (or has no name)."""

    def where(name: str) -> str | None:
        """The folder the image should be in, or None when it is of a modality not converted."""
        m = NAME_RE.match(name)
        mod = m.group(3).upper() if m else None
        return FOLDERS[mod] if mod in mods else None if m else "the image folders"

    for row, reason in label_problems:
        w.skip(xlsx, reason, row=row)
    for name, info in labels.items():
        folder = where(name)
        if name not in seen and folder is not None:
            w.skip(xlsx, f"{name}: no image file {name}.jpg in '{folder}'", row=info["row"])
    for name, rows in regions.items():
        folder = where(name)
        if name not in seen and folder is not None:
            for row, _ in rows:
                w.skip(csv, f"{name}: region of an image with no file in '{folder}'", row=row)


def _cdd_item(ctx: dict[str, Any], item: tuple, w: Any) -> None:
    """One image file with its workbook row and VIA regions: masks, ``w.add`` (or skip); runs in a worker
    process (:func:`modise.data.parallel.convert_items`)."""
    path, mod, label, regions = item
    include_normal, max_size, cat_of = ctx["include_normal"], ctx["max_size"], ctx["cat_of"]
    xlsx_name, csv_name = ctx["xlsx"], ctx["csv"]  # the files the messages cite
    name = clean_name(path.name).upper()
    w.note("seen", name)
    rel = f"{path.parent.name}/{path.name}"
    m = NAME_RE.match(name)
    if m is None:
        w.skip(rel, "name is not P{n}_{L|R}_{DM|CM}_{CC|MLO}")
        return
    if label is None:
        w.skip(rel, f"no row for '{name}' in {xlsx_name} (no image-level label)")
        return
    pathology = label["pathology"]
    if pathology == "Normal" and not include_normal:
        w.note("excluded", rel)
        return
    if pathology not in cat_of and pathology != "Normal":
        w.skip(rel, f"unknown pathology '{pathology}' in {xlsx_name}")
        return
    try:
        h, wd = check_raster(path)
    except ModiseError as e:
        w.skip(rel, str(e))
        return
    scale = resize_plan(h, wd, max_size)
    oh, ow = (round(h * scale), round(wd * scale)) if scale != 1.0 else (h, wd)
    segments = []
    if pathology != "Normal":
        for row, text in regions:
            try:
                mask = shape_to_mask(parse_shape(text), h, wd)
            except ShapeError as e:
                w.skip(csv_name, f"{name}: {e}", row=row)
                continue
            segments.append((resize_mask(mask, (oh, ow)) if scale != 1.0 else mask, cat_of[pathology]))
        if not segments:
            why = "no usable region" if regions else "no region"
            w.skip(rel, f"{pathology} image with {why} in {csv_name}")
            return
    common = dict(
        height=oh,
        width=ow,
        patient_id=label["patient_id"] or f"P{m.group(1)}",
        laterality=m.group(2).upper(),
        view=m.group(4).upper(),
        modality=mod,
        source_file=rel,
        pathology=pathology,
        breast_density=label.get("breast_density", ""),
    )
    if scale != 1.0:
        from modise.data.imageio import read_image

        w.add(name, segments, pixels=resize_pixels(read_image(path).pixels, scale), **common)
    else:
        w.add(name, segments, copy_from=path, **common)
