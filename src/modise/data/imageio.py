"""Read mammograms from PNG, JPEG, TIFF and DICOM into one grey float array.

DICOM goes through the modality LUT (rescale), the VOI LUT or window, and MONOCHROME1
inversion, so that in every returned image dense tissue is bright; :func:`dicom_values`
gives those values unscaled, for readers that scale them their own way (MAM-E's vendor
saturation in ``synthesis.mame_image``). JPEG 2000 and
other compressed transfer syntaxes decode through pylibjpeg.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modise.errors import ModiseError

DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


@dataclass
class LoadedImage:
    """A grey image in [0, 1] (H, W) float32 plus what the source said about it."""

    pixels: np.ndarray
    path: Path
    is_dicom: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    dataset: Any = None  # the pydicom Dataset, for DICOM SEG references

    @property
    def uint8(self) -> np.ndarray:
        return to_uint8(self.pixels)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)


def is_dicom_file(path: str | Path) -> bool:
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix.lower() in RASTER_SUFFIXES:
        return False
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def read_image(path: str | Path) -> LoadedImage:
    """Read any supported image as grey float32 in [0, 1]; raise ModiseError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ModiseError(f"{path}: file not found.")
    if is_dicom_file(path):
        return read_dicom(path)
    return read_raster(path)


def read_raster(path: str | Path) -> LoadedImage:
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        reason = str(e).replace(f" '{path}'", "").replace(str(path), "it")  # PIL names the file again
        raise ModiseError(f"{path}: not a readable image ({reason}).") from None
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.float32).mean(axis=2) if arr.shape[2] >= 3 else arr[..., 0]
    arr = np.asarray(arr, dtype=np.float32)
    maxval = 65535.0 if arr.max(initial=0) > 255 else 255.0
    return LoadedImage(pixels=np.clip(arr / maxval, 0, 1).astype(np.float32), path=path)


def open_dicom(path: str | Path) -> Any:
    """The pydicom Dataset of ``path`` with its pixels decoded; ModiseError if it is not a readable DICOM image."""
    import pydicom

    try:
        ds = pydicom.dcmread(path)
        ds.pixel_array  # decode now: broken or unsupported pixel data fails here, named
    except Exception as e:  # pydicom raises many types for garbage input
        raise ModiseError(f"{path}: not a readable DICOM image ({type(e).__name__}: {e}).") from None
    return ds


def dicom_values(ds: Any) -> np.ndarray:
    """Display values of a DICOM image, in its stored range: (H, W) float64.

    Modality LUT (rescale), then the first VOI LUT or window, then MONOCHROME1 inverted as
    ``2**BitsStored - 1 - value`` so dense tissue is high. Not normalised: vendor-specific
    scalings (MAM-E's /4095, /3500) apply to these values.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    raw = ds.pixel_array
    if raw.ndim == 3 and getattr(ds, "SamplesPerPixel", 1) == 1:
        raw = raw[0]  # multi-frame: first frame
    if raw.ndim == 3:
        raw = raw.mean(axis=2)
    arr = apply_modality_lut(raw, ds).astype(np.float64)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        arr = apply_voi_lut(arr, ds, index=0, prefer_lut=True).astype(np.float64)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        arr = stored_max(ds) - arr
    return arr


def stored_max(ds: Any) -> float:
    """The largest stored pixel value, ``2**BitsStored - 1``."""
    return float(2 ** int(getattr(ds, "BitsStored", 16)) - 1)


def dicom_meta(ds: Any) -> dict[str, Any]:
    """Manufacturer, laterality, view, pixel spacing (mm) and photometric interpretation of a DICOM image."""
    meta = {
        "manufacturer": str(getattr(ds, "Manufacturer", "")),
        "laterality": str(getattr(ds, "ImageLaterality", "") or getattr(ds, "Laterality", "")),
        "view": str(getattr(ds, "ViewPosition", "")),
        "pixel_spacing": [float(v) for v in getattr(ds, "PixelSpacing", [])] or None,
        "photometric": str(getattr(ds, "PhotometricInterpretation", "")),
    }
    if meta["pixel_spacing"] is None and "ImagerPixelSpacing" in ds:
        meta["pixel_spacing"] = [float(v) for v in ds.ImagerPixelSpacing]
    return meta


def read_dicom(path: str | Path) -> LoadedImage:
    """A DICOM image through :func:`dicom_values`, scaled to [0, 1]: by the window's stored range when a
    window (and no VOI LUT) is given, else by the image's own min and max."""
    path = Path(path)
    return dicom_image(open_dicom(path), path)


def dicom_image(ds: Any, path: str | Path) -> LoadedImage:
    """:func:`read_dicom` of a Dataset already read (e.g. retrieved over DICOMweb); ``path`` names it.
    ModiseError when its pixels cannot be decoded."""
    path = Path(path)
    try:
        arr = dicom_values(ds)
    except Exception as e:  # noqa: BLE001  pydicom raises many types for broken pixel data
        raise ModiseError(f"{path}: not a readable DICOM image ({type(e).__name__}: {e}).") from None
    if "WindowCenter" in ds and "VOILUTSequence" not in ds:
        lo, hi = 0.0, stored_max(ds)  # apply_voi_lut keeps the output range of the stored bits
    else:
        lo, hi = float(arr.min()), float(arr.max())
    out = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return LoadedImage(pixels=np.clip(out, 0, 1).astype(np.float32), path=path, is_dicom=True, meta=dicom_meta(ds),
                       dataset=ds)
