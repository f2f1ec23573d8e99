"""The images to predict on, each once as an :class:`InputItem` (path, output name, image id): files
and folders of PNG / JPEG / TIFF / DICOM, the images of a prepared dataset's fold, and the MG / DX
instances of the studies a DICOMweb server finds for a query (:func:`collect_remote`)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    remote: Any = None  # a modise.dicom.dicomweb.RemoteInstance: retrieved by WADO-RS when read

    @property
    def source(self) -> str:
        """Where the image comes from, as outputs record it: its path, or its WADO-RS URL (no credentials)."""
        return self.remote.url if self.remote is not None else str(self.path)


class SkippedInput(ModiseError):
    """An input that is not an image modise predicts (e.g. a DICOM "FOR PROCESSING"): counted, not failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_item(item: InputItem) -> Any:
    """The item's :class:`~modise.data.imageio.LoadedImage`: read from disk, or retrieved over DICOMweb (one
    instance in memory at a time). ModiseError names the file, or the server and the instance;
    :class:`SkippedInput` when the retrieved instance turns out not to be one modise predicts."""
    from modise.data.imageio import dicom_image, read_image

    if item.remote is None:
        return read_image(item.path)
    from modise.dicom.dicomweb import server_for, skip_reason

    inst = item.remote
    server = server_for(inst.server)
    ds = server.retrieve(inst)
    reason = skip_reason(str(getattr(ds, "SOPClassUID", "")), str(getattr(ds, "Modality", "")).upper(),
                         str(getattr(ds, "PresentationIntentType", "")))
    if reason:
        raise SkippedInput(reason)
    try:
        return dicom_image(ds, item.path)
    except ModiseError as e:
        why = str(e).removeprefix(f"{item.path}: not a readable DICOM image ").strip()
        raise ModiseError(f"The DICOMweb server {server.name} sent {inst.describe()}, which is not a readable "
                          f"DICOM image {why}") from None


def collect_remote(url: str, queries: dict[str, str]) -> tuple[list[InputItem], Counter]:
    """The MG / DX-for-presentation instances the DICOMweb server at ``url`` finds for ``queries``, as items
    named by their SOP Instance UID (stable, so ``--resume`` finds them again), and the skipped ones
    counted by reason. ModiseError (one sentence naming the server) when the server cannot be asked or
    finds nothing to predict."""
    from modise.dicom.dicomweb import server_for

    server = server_for(url)
    found, skipped = server.search(queries)
    if not found:
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
        query = ", ".join(f"{k}={v}" for k, v in queries.items()) or "the query"
        raise ModiseError(f"The DICOMweb server {server.name} holds no MG image (nor DX for presentation) for "
                          f"{query} (skipped: {why}).")
    return [InputItem(Path(f"{inst.sop}.dcm"), inst.sop, None, inst) for inst in found], skipped


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
