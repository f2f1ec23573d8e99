"""Find the images to predict on: files and folders of PNG / JPEG / TIFF / DICOM."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from modise.data.imageio import DICOM_SUFFIXES, RASTER_SUFFIXES, is_dicom_file
from modise.errors import ModiseError


def discover_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted, de-duplicated list of image files.

    Inside folders, files are kept when their suffix is an image/DICOM suffix or, for
    suffix-less files, when they carry the DICOM ``DICM`` preamble; folders modise wrote (its
    ``.modise-output`` marker: earlier predictions, overlays, heatmaps) are skipped. Explicitly
    named files are always kept (an unreadable one is reported later by the reader, by name).
    """
    from modise.outputs import MARKER

    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            written = [d.parent for d in p.rglob(MARKER) if d.parent != p]
            for f in sorted(p.rglob("*")):
                if not f.is_file() or any(part.startswith(".") for part in f.relative_to(p).parts):
                    continue
                if any(d in f.parents for d in written):
                    continue
                suffix = f.suffix.lower()
                if suffix in RASTER_SUFFIXES or suffix in DICOM_SUFFIXES or (suffix == "" and is_dicom_file(f)):
                    found.append(f)
        elif p.is_file():
            found.append(p)
        else:
            raise ModiseError(f"Input '{p}' does not exist.")
    seen: set[Path] = set()
    unique = []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    if not unique:
        raise ModiseError("No PNG, JPEG, TIFF or DICOM images found in the given inputs.")
    return unique


def unique_stems(paths: list[Path]) -> list[str]:
    """Output names per input: the file stem, suffixed with a counter where stems repeat."""
    counts: dict[str, int] = {}
    names = []
    for p in paths:
        stem = p.stem if p.suffix else p.name
        n = counts.get(stem, 0)
        counts[stem] = n + 1
        names.append(stem if n == 0 else f"{stem}_{n}")
    return names
