"""Which rows of a mammogram CSV (VinDr's finding_annotations.csv or a metadata.csv) become MAM-E
training images: healthy images for text-to-image, one image + box per finding for inpainting,
Siemens images only unless asked; each image's rows prepared in a worker process."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modise.errors import ModiseError
from modise.synthesis.mame_image import VENDOR_COLUMNS, first_value, prepare_image, vendor_name

FILE_COLUMNS = ("file_name", "filename", "file", "path", "image")


def _categories(value: Any) -> list[str]:
    """VinDr's finding_categories, a Python-list string, as a list."""
    try:
        cats = ast.literal_eval(str(value))
    except (ValueError, SyntaxError):
        cats = [str(value)]
    return [str(c).strip() for c in (cats if isinstance(cats, list) else [cats])]


def _is_healthy(value: Any) -> bool:
    """Healthy is exactly ['No Finding']."""
    return _categories(value) == ["No Finding"]


# The finding lists of MAM-E's later Mass-only inpainting data (masks_generation_vindr.py@HEAD:25-29).
MASS_CATEGORIES = ({"Mass"}, {"Suspicious Calcification", "Mass"})
# lesions: every finding but "No Finding" (masks_generation_vindr.py@10a9966:29-30), the data of the
# released Likalto4/vindr_lesion-inpainting (mame_recipe.py); mass: the Mass-only selection.
FINDINGS = ("lesions", "mass")


def _is_mass(value: Any) -> bool:
    """A Mass finding: exactly ['Mass'] or ['Suspicious Calcification', 'Mass']."""
    return set(_categories(value)) in MASS_CATEGORIES


def _is_inpainted(value: Any, findings: str) -> bool:
    return _is_mass(value) if findings == "mass" else not _is_healthy(value)


def manufacturer(path: Path, row: dict[str, Any], vendor_flag: str | None) -> str | None:
    """The image's vendor as given (--vendor, the CSV) or in its DICOM header; None if unreadable."""
    given = vendor_flag or first_value(row, VENDOR_COLUMNS)
    if given or not path.is_file():
        return given
    from modise.data.imageio import is_dicom_file

    if not is_dicom_file(path):
        return ""
    import pydicom

    try:
        return str(getattr(pydicom.dcmread(path, stop_before_pixels=True), "Manufacturer", "") or "")
    except Exception:  # noqa: BLE001  prepare_image names the unreadable file
        return None


def read_table(csv: Path) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except Exception as e:
        raise ModiseError(f"{csv}: not a readable CSV ({e}).") from None
    df.columns = [c.strip() for c in df.columns]
    return df.to_dict("records")


def resolve_file(root: Path, row: dict[str, Any]) -> Path | None:
    """VinDr layout (images/<study_id>/<image_id>.dicom) or a file column relative to ``root``."""
    name = first_value(row, FILE_COLUMNS)
    if name:
        return root / name
    image_id, study = first_value(row, ("image_id",)), first_value(row, ("study_id",))
    if image_id:
        for cand in ([root / "images" / study / f"{image_id}.dicom"] if study else []) + [
            root / "images" / f"{image_id}.dicom", root / f"{image_id}.dicom", root / f"{image_id}.dcm",
            root / f"{image_id}.png",
        ]:
            if cand.is_file():
                return cand
        return root / "images" / (study or "") / f"{image_id}.dicom"
    return None


def group_rows(root: Path, csv: Path, rows: list[dict[str, Any]], warn: Callable[[str], None]) -> dict[Path, list[tuple[int, dict[str, Any]]]]:
    """Rows by image file with their CSV line numbers (VinDr has one row per finding); rows naming no file are skipped."""
    groups: dict[Path, list[tuple[int, dict[str, Any]]]] = {}
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        path = resolve_file(root, row)
        if path is None:
            warn(f"{csv} line {i}: no file name or image_id; skipped.")
            continue
        groups.setdefault(path, []).append((i, row))
    return groups


def prepare_group(ctx: dict[str, Any], group: tuple[Path, list[tuple[int, dict[str, Any]]]], w: Any) -> None:
    """One image's CSV rows -> ``w.add(path, prepared)`` per output image, ``w.warn`` per skipped row,
    ``w.note("other_vendor", maker)`` for a left-out vendor; runs in a worker process
    (:func:`modise.data.parallel.convert_items`)."""
    csv, inpainting, vendor, side = ctx["csv"], ctx["inpainting"], ctx["vendor"], ctx["side"]
    findings, all_vendors = ctx["findings"], ctx["all_vendors"]
    path, items = group
    line, row = items[0]
    has_findings = "finding_categories" in row
    what = "Mass finding" if findings == "mass" else "finding"
    if inpainting:
        # One (image, mask) pair per finding, one filled box each (masks_generation_vindr.py:25-30,45-118).
        jobs = []
        for ln, r in items:
            if has_findings and not _is_inpainted(r.get("finding_categories"), findings):
                continue
            try:
                jobs.append((ln, [tuple(float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax"))]))
            except (KeyError, ValueError):
                w.warn(f"{csv} line {ln}: a {what} without a usable box; skipped.")
        if not jobs:
            return
    elif has_findings and not all(_is_healthy(r.get("finding_categories")) for _, r in items):
        return
    else:
        jobs = [(line, None)]
    if not path.is_file():
        w.warn(f"{csv} line {line}: {path} not found; skipped.")
        return
    if has_findings and not all_vendors:
        maker = manufacturer(path, row, vendor)
        if maker is not None and vendor_name(maker) != "siemens":
            w.note("other_vendor", maker or "unknown")
            return
    for ln, boxes in jobs:
        try:
            prep = prepare_image(path, row, vendor, boxes=boxes, side=side)
        except ModiseError as e:
            w.warn(f"{e} Skipped.")
            break
        if boxes is not None and (prep.mask is None or not prep.mask.any()):
            w.warn(f"{csv} line {ln}: the box of {path.name} falls outside the {side}x{side} frame; skipped.")
            continue
        w.add(path, prep)
