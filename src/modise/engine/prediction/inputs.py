"""The images to predict on, each once as an :class:`InputItem` (path, output name, image id): files
and folders of PNG / JPEG / TIFF / DICOM, and the images of a prepared dataset's fold."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class InputItem:
    """One image to predict: its file, its output name (``panoptic/<name>.png``) and its image id where a
    prepared dataset gives one (``None``: numbered in input order when the records are merged)."""

    path: Path
    name: str
    image_id: int | None = None


def collect_inputs(inputs: Sequence[str | Path] | None, data: str | Path | None = None,
                   fold: int | None = None) -> list[InputItem]:
    """``--input`` files / folders, then the images of fold ``fold`` of dataset ``data`` (with their ids),
    as items in input order. An input inside a prepared dataset (``<root>/images/<file>``) keeps that
    dataset's image id, so predictions line up with its ground truth in ``modise evaluate``."""
    fold_ids = fold_images(data, fold)
    paths = discover_inputs([*(inputs or []), *fold_ids])
    ids = {**dataset_ids([p for p in paths if p not in fold_ids]), **fold_ids}
    return [InputItem(p, name, ids.get(p)) for p, name in zip(paths, unique_stems(paths))]


def fold_images(data: str | Path | None, fold: int | None) -> dict[Path, int]:
    """The image files of fold ``fold`` of dataset ``data`` -> their image ids (none without ``fold``)."""
    if fold is None:
        if data is not None:
            raise ModiseError("--data needs --fold K (which fold's images to predict).")
        return {}
    if data is None:
        raise ModiseError("--fold needs --data (the dataset whose folds.json names the images).")
    from modise.data.dataset import fold_image_ids, load_folds
    from modise.data.panoptic import IMAGES_DIR, load_panoptic_json

    data = Path(data)
    ids = set(fold_image_ids(load_folds(data), fold, data))
    files = {im["id"]: im["file_name"] for im in load_panoptic_json(data)["images"]}
    missing = sorted(ids - set(files))
    if missing:
        raise ModiseError(f"{data / 'folds.json'}: fold {fold} lists image id {missing[0]}, which {data / 'panoptic.json'} does not.")
    return {data / IMAGES_DIR / files[i]: int(i) for i in sorted(ids)}


def dataset_ids(paths: Sequence[Path]) -> dict[Path, int]:
    """The image ids of the ``paths`` that live in a prepared dataset (``<root>/images/<file>``, listed
    in ``<root>/panoptic.json``)."""
    from modise.data.panoptic import PANOPTIC_JSON

    ids: dict[Path, int] = {}
    roots: dict[Path, dict[str, int]] = {}
    for p in paths:
        root = p.resolve().parent.parent
        if root not in roots:
            try:
                data = json.loads((root / PANOPTIC_JSON).read_text())
                roots[root] = {str(im["file_name"]): int(im["id"]) for im in data["images"]}
            except (OSError, ValueError, KeyError, TypeError):
                roots[root] = {}
        rel = p.resolve().relative_to(root).as_posix()
        hit = roots[root].get(p.name, roots[root].get(rel))
        if hit is not None:
            ids[p] = hit
    return ids
