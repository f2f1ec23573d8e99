"""One mammogram into MAM-E's frame: 512x512, left-facing, 8-bit, with its prompt fields.

MAM-E's recipe: DICOM through the modality LUT, VOI LUT and MONOCHROME1 inversion, then
8-bit with the vendor's saturation value (Hologic /4095*255, Siemens /3500*255 then clip);
right breasts mirrored to face left; short side resized to 512 and centre-cropped to
512x512. Lesion boxes or masks go through the same flip/resize/crop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modise.synthesis.prompts import area_word, density_word

SATURATION = {"hologic": 4095.0, "siemens": 3500.0}  # MAM-E's 8-bit conversion per vendor
VIEW_COLUMNS = ("view_position", "view", "ViewPosition")
LAT_COLUMNS = ("laterality", "side", "ImageLaterality")
DENSITY_COLUMNS = ("breast_density", "density")
VENDOR_COLUMNS = ("vendor", "manufacturer", "Manufacturer")


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
        vendor = vendor_name(vendor_flag or first_value(row, VENDOR_COLUMNS) or meta["manufacturer"])
        pixels = saturate_uint8(dicom_values(ds), vendor, stored_max(ds))
        lat = first_value(row, LAT_COLUMNS) or meta["laterality"]
        view = first_value(row, VIEW_COLUMNS) or meta["view"]
    else:
        pixels = read_image(path).uint8
        vendor = vendor_name(vendor_flag or first_value(row, VENDOR_COLUMNS))
        lat, view = first_value(row, LAT_COLUMNS), first_value(row, VIEW_COLUMNS)
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
    density = density_word(first_value(row, DENSITY_COLUMNS))
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


def first_value(row: dict[str, Any], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` that ``row`` holds a value for (blank, nan and None are no value)."""
    for n in names:
        v = row.get(n)
        if v is not None and str(v).strip() not in ("", "nan", "None"):
            return str(v).strip()
    return None
