"""Prepare mammograms for MAM-E fine-tuning: 512x512 left-facing 8-bit PNGs + prompts.

MAM-E's recipe: healthy images only (``No Finding``) for text-to-image; DICOM through the
modality LUT, VOI LUT and MONOCHROME1 inversion, then 8-bit with the vendor's saturation
value (Hologic /4095*255, Siemens /3500*255 then clip); right breasts mirrored to face
left; short side resized to 512 and centre-cropped to 512x512. The output is a
``metadata.jsonl`` image folder (``file_name``, ``text`` and the fields behind it), as
diffusers' training scripts read it. For inpainting, lesion boxes or masks go through
the same flip/resize/crop and are written as ``*_mask.png`` beside the images.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modise.errors import ModiseError
from modise.synthesis.prompts import INPAINT_PROMPT, area_word, density_word, training_caption

SATURATION = {"hologic": 4095.0, "siemens": 3500.0}  # MAM-E's 8-bit conversion per vendor
VIEW_COLUMNS = ("view_position", "view", "ViewPosition")
LAT_COLUMNS = ("laterality", "side", "ImageLaterality")
DENSITY_COLUMNS = ("breast_density", "density")
VENDOR_COLUMNS = ("vendor", "manufacturer", "Manufacturer")
FILE_COLUMNS = ("file_name", "filename", "file", "path", "image")


@dataclass
class Prepared:
    """One prepared image: 512x512 uint8 pixels, its prompt fields and an optional lesion mask."""

    pixels: np.ndarray
    fields: dict[str, Any]
    mask: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def vendor_name(manufacturer: str | None) -> str | None:
    """DICOM Manufacturer -> MAM-E vendor word (siemens | hologic), None for others."""
    m = (manufacturer or "").lower()
    return next((v for v in SATURATION if v in m), None)


def saturate_uint8(values: np.ndarray, vendor: str | None, top: float) -> np.ndarray:
    """MAM-E's 8-bit conversion of display values: ``value / saturation * 255``, clipped.

    Saturation per vendor (Siemens 3500: ``from_uint16to8.py:29,50-53``; Hologic 4095:
    ``save_RGB_pngs.py:47``), applied after the VOI LUT as MAM-E does
    (``from_dicom2png.py:34`` stores the VOI-LUT output that those scripts scale);
    ``top`` (the stored range) for other vendors.
    """
    sat = SATURATION.get(vendor or "", top)
    return np.clip(np.rint(values / sat * 255.0), 0, 255).astype(np.uint8)


def to_frame(pixels: np.ndarray, flip: bool, side: int = 512, order: int = 1) -> np.ndarray:
    """Mirror (if ``flip``), resize the short side to ``side``, centre-crop ``side`` x ``side``."""
    from PIL import Image

    if flip:
        pixels = pixels[:, ::-1]
    h, w = pixels.shape
    scale = side / min(h, w)
    nh, nw = max(side, round(h * scale)), max(side, round(w * scale))
    resample = Image.BILINEAR if order else Image.NEAREST
    im = np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize((nw, nh), resample))
    y0, x0 = (nh - side) // 2, (nw - side) // 2
    return im[y0 : y0 + side, x0 : x0 + side]


def faces_right(pixels: np.ndarray) -> bool:
    """True when the breast is on the right half (more signal there): used when laterality is unknown."""
    w = pixels.shape[1]
    return float(pixels[:, w // 2 :].mean()) > float(pixels[:, : w // 2].mean())


def prepare_image(
    path: Path,
    row: dict[str, Any],
    vendor_flag: str | None = None,
    boxes: list[tuple[float, float, float, float]] | None = None,
    lesion_mask: np.ndarray | None = None,
    side: int = 512,
) -> Prepared:
    """Read one image (DICOM or raster) with its CSV row and map it (and its lesions) into the frame."""
    from modise.data.imageio import dicom_meta, dicom_values, is_dicom_file, open_dicom, read_image, stored_max

    notes = []
    if is_dicom_file(path):
        ds = open_dicom(path)
        meta = dicom_meta(ds)
        vendor = vendor_name(vendor_flag or _first(row, VENDOR_COLUMNS) or meta["manufacturer"])
        pixels = saturate_uint8(dicom_values(ds), vendor, stored_max(ds))
        lat = _first(row, LAT_COLUMNS) or meta["laterality"]
        view = _first(row, VIEW_COLUMNS) or meta["view"]
    else:
        pixels = read_image(path).uint8
        vendor = vendor_name(vendor_flag or _first(row, VENDOR_COLUMNS))
        lat, view = _first(row, LAT_COLUMNS), _first(row, VIEW_COLUMNS)
    lat = (lat or "").strip().upper()[:1]
    if lat not in ("L", "R"):
        lat = "R" if faces_right(pixels) else "L"
        notes.append("laterality guessed from the image")
    flip = lat == "R"
    mask = None
    if boxes or lesion_mask is not None:
        full = np.zeros(pixels.shape, bool) if lesion_mask is None else np.asarray(lesion_mask, bool).copy()
        for x0, y0, x1, y1 in boxes or []:
            H, W = full.shape
            full[max(0, int(y0)) : min(H, int(np.ceil(y1))), max(0, int(x0)) : min(W, int(np.ceil(x1)))] = True
        mask = to_frame(full.astype(np.uint8) * 255, flip, side, order=0) > 127
    frame = to_frame(pixels, flip, side)
    view = (view or "").strip().upper()
    density = density_word(_first(row, DENSITY_COLUMNS))
    fields = {
        "vendor": vendor,
        "view": view if view in ("CC", "MLO") else None,
        "density": density,
        "area": area_word(float((frame > 0).mean())),
        "laterality": lat,
        "flipped": flip,
    }
    for k in ("vendor", "view", "density"):
        if fields[k] is None:
            notes.append(f"no {k}")
    return Prepared(frame, fields, mask, notes)


def _first(row: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for n in names:
        v = row.get(n)
        if v is not None and str(v).strip() not in ("", "nan", "None"):
            return str(v).strip()
    return None


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
    given = vendor_flag or _first(row, VENDOR_COLUMNS)
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
    name = _first(row, FILE_COLUMNS)
    if name:
        return root / name
    image_id, study = _first(row, ("image_id",)), _first(row, ("study_id",))
    if image_id:
        for cand in ([root / "images" / study / f"{image_id}.dicom"] if study else []) + [
            root / "images" / f"{image_id}.dicom", root / f"{image_id}.dicom", root / f"{image_id}.dcm",
            root / f"{image_id}.png",
        ]:
            if cand.is_file():
                return cand
        return root / "images" / (study or "") / f"{image_id}.dicom"
    return None


def prepare_folder(
    root: Path,
    csv: Path | None,
    out: Path,
    inpainting: bool = False,
    vendor: str | None = None,
    side: int = 512,
    warn: Callable[[str], None] = print,
    findings: str = "lesions",
    all_vendors: bool = False,
    workers: int | None = 1,
) -> list[dict[str, Any]]:
    """Prepare every usable image listed in ``csv`` (default: ``root``'s finding_annotations.csv or
    metadata.csv) into ``out``; returns the ``metadata.jsonl`` records (also written).

    VinDr (a ``finding_categories`` column): healthy images, or with ``inpainting`` one image + box
    per finding of ``findings`` (:data:`FINDINGS`); Siemens images only unless ``all_vendors``, as
    MAM-E used VinDr (``from_dicom2png.py:34-39`` kept the uint16 VOI-LUT outputs into its
    ``siemens15k`` folder; ``masks_generation_vindr.py@10a9966:65`` "only SIEMENS will appear").
    ``workers``: processes reading the images (None: all cores); the output is the same for any number."""
    if findings not in FINDINGS:
        raise ModiseError(f"--findings must be one of {', '.join(FINDINGS)}, not '{findings}'.")
    from modise.data.parallel import convert_items
    from modise.synthesis.metadata import write_metadata_jsonl

    csv = csv or next((root / n for n in ("finding_annotations.csv", "metadata.csv") if (root / n).is_file()), None)
    if csv is None:
        raise ModiseError(f"{root}: no finding_annotations.csv or metadata.csv; pass --csv.")
    rows = read_table(csv)
    # Group rows by image: VinDr has one row per finding.
    groups: dict[Path, list[tuple[int, dict[str, Any]]]] = {}
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        path = resolve_file(root, row)
        if path is None:
            warn(f"{csv} line {i}: no file name or image_id; skipped.")
            continue
        groups.setdefault(path, []).append((i, row))
    records: list[dict[str, Any]] = []
    other_vendors: dict[str, int] = {}

    class _Records:  # what a group's worker recorded, applied here in CSV order (ids = positions)
        def warn(self, msg: str) -> None:
            warn(msg)

        def add(self, path: Path, prep: Any) -> None:
            rec = _write(out, path, prep, inpainting, len(records))
            if prep.notes and not inpainting:
                warn(f"{path}: {', '.join(prep.notes)}; shorter prompt '{rec['text']}'.")
            records.append(rec)

    def on_note(kind: str, maker: Any) -> None:
        if kind == "other_vendor":
            other_vendors[maker] = other_vendors.get(maker, 0) + 1

    ctx = dict(csv=csv, inpainting=inpainting, vendor=vendor, side=side, findings=findings, all_vendors=all_vendors)
    convert_items(_prepare_group, ctx, groups.items(), _Records(), workers, on_note=on_note)
    if other_vendors:
        counts = ", ".join(f"{k}: {n}" for k, n in sorted(other_vendors.items()))
        warn(f"{sum(other_vendors.values())} image(s) of other vendors than Siemens left out ({counts}), as MAM-E "
             f"trained on VinDr's Siemens images only; --all-vendors keeps them.")
    if not records:
        raise ModiseError(f"No usable images found through {csv}.")
    write_metadata_jsonl(out / "metadata.jsonl", records)
    if inpainting:
        _write_box_stats(out, records, side, warn)
    return records


def prepare_panoptic(dataset: Path, out: Path, side: int = 512, warn: Callable[[str], None] = print):
    """Inpainting data from a canonical panoptic dataset: every image with lesion (thing) segments."""
    from modise.data.panoptic import IMAGES_DIR, PANOPTIC_DIR, load_panoptic_json, read_id_png
    from modise.synthesis.metadata import write_metadata_jsonl

    data = load_panoptic_json(dataset)
    things = {int(c["id"]) for c in data["categories"] if int(c.get("isthing", 1))}
    anns = {int(a["image_id"]): a for a in data["annotations"]}
    records = []
    for im in data["images"]:
        ann = anns.get(int(im["id"]))
        seg_ids = [s["id"] for s in (ann or {}).get("segments_info", []) if int(s["category_id"]) in things]
        if not seg_ids:
            continue
        try:
            ids = read_id_png(dataset / PANOPTIC_DIR / ann["file_name"])
            prep = prepare_image(dataset / IMAGES_DIR / im["file_name"], im, lesion_mask=np.isin(ids, seg_ids), side=side)
        except (ModiseError, OSError) as e:
            warn(f"{dataset}: image {im['file_name']}: {e} Skipped.")
            continue
        records.append(_write(out, Path(im["file_name"]), prep, True, len(records)))
    if not records:
        raise ModiseError(f"{dataset}: no image with a lesion segment.")
    write_metadata_jsonl(out / "metadata.jsonl", records)
    _write_box_stats(out, records, side, warn)
    return records


def _write_box_stats(out: Path, records: list[dict[str, Any]], side: int, warn: Callable[[str], None]) -> None:
    """MAM-E's inpainting box statistics from the masks just written (``box_stats.json``)."""
    from PIL import Image

    from modise.synthesis.boxes import fit_mame_box_stats, save_box_stats

    masks = [np.asarray(Image.open(out / r["mask_file_name"])) > 127 for r in records if "mask_file_name" in r]
    try:
        save_box_stats(fit_mame_box_stats(masks, side), out)
    except ModiseError as e:
        warn(f"{e} No box_stats.json written; automatic boxes will use the built-in statistics.")


def _write(out: Path, src: Path, prep: Prepared, inpainting: bool, index: int) -> dict[str, Any]:
    from PIL import Image

    name = f"{index:06d}_{src.stem}.png"
    Image.fromarray(prep.pixels).save(out / name)
    f = prep.fields
    # One concept per vendor, as MAM-E captioned its training data (prompts.training_caption).
    text = INPAINT_PROMPT if inpainting else training_caption(f["vendor"], f["view"], f["density"], f["area"])
    rec = {"file_name": name, "text": text, "source": str(src), **f}
    if inpainting and prep.mask is not None:
        mname = f"{index:06d}_{src.stem}_mask.png"
        Image.fromarray(prep.mask.astype(np.uint8) * 255).save(out / mname)
        rec["mask_file_name"] = mname
    return rec


def _prepare_group(ctx: dict[str, Any], group: tuple[Path, list[tuple[int, dict[str, Any]]]], w: Any) -> None:
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
