"""``modise export nnunet``: a canonical panoptic dataset as an nnU-Net v2 raw dataset.

``RAW/DatasetNNN_Name/`` gets ``imagesTr/<case>_0000.png`` (one grey channel), ``labelsTr/<case>.png``
(semantic labels: 0 background, 1..K the dataset's categories in ``panoptic.json`` order, instances
merged), ``dataset.json``, ``splits_final.json`` (modise's patient-level ``folds.json``: split k
validates on fold k and trains on the others, so nnU-Net's folds are modise's) and
``modise_cases.json`` (case -> modise image id and file name, for the way back). The layout follows
nnU-Net's documentation/dataset_format.md; no nnU-Net import is needed to write it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.panoptic import FOLDS_JSON, IMAGES_DIR, PANOPTIC_DIR, PANOPTIC_JSON, load_panoptic_json, read_id_png
from modise.errors import ModiseError

CHANNEL_NAME = "grey"  # any name but "CT" gets nnU-Net's per-image z-score normalisation
FILE_ENDING = ".png"
SPLITS_JSON = "splits_final.json"
CASES_JSON = "modise_cases.json"


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's ``DatasetNNN_Name`` (three-digit id)."""
    return f"Dataset{dataset_id:03d}_{name}"


def clean_dataset_name(name: str) -> str:
    """Letters and digits only (nnU-Net splits folder names at '_'); 'Modise' if nothing is left."""
    return re.sub(r"[^A-Za-z0-9]", "", name) or "Modise"


def case_names(images: Sequence[dict[str, Any]]) -> dict[int, str]:
    """Image id -> nnU-Net case identifier: the file stem in safe characters, made unique with the id."""
    out: dict[int, str] = {}
    used: set[str] = set()
    for im in sorted(images, key=lambda im: int(im["id"])):
        case = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(str(im["file_name"])).stem) or "image"
        if case in used:
            case = f"{case}_id{int(im['id'])}"
        used.add(case)
        out[int(im["id"])] = case
    return out


def semantic_labels(ids: np.ndarray, segments: Sequence[dict[str, Any]], label_of: dict[int, int], where: str) -> np.ndarray:
    """A panoptic id map -> uint8 label map (instances merged into their class; unlisted ids are background).
    One segment id listed with two classes would make one pixel two lesions: refused."""
    cls: dict[int, int] = {}
    for s in segments:
        sid, cat = int(s["id"]), int(s["category_id"])
        if cat not in label_of:
            raise ModiseError(f"{where}: segment {sid} has category {cat}, which {PANOPTIC_JSON} does not define.")
        if cls.get(sid, label_of[cat]) != label_of[cat]:
            raise ModiseError(f"{where}: segment {sid} is listed with two classes, so its pixels would belong to overlapping "
                              "instances of different classes; fix the annotation (one class per segment) and export again.")
        cls[sid] = label_of[cat]
    lut = np.zeros(int(ids.max(initial=0)) + 1, np.uint8)
    for sid, label in cls.items():
        if sid < lut.size:
            lut[sid] = label
    return lut[ids]


def nnunet_splits(folds: list[list[int]], case_of: dict[int, str], folds_path: Path) -> list[dict[str, list[str]]]:
    """``folds.json`` as nnU-Net's ``splits_final.json``: split k = (train: the other folds, val: fold k)."""
    if len(folds) < 2:
        raise ModiseError(f"{folds_path}: defines {len(folds)} fold, so no fold can be held out; prepare the data with --folds 2 or more.")
    for k, fold in enumerate(folds):
        if not fold:
            raise ModiseError(f"{folds_path}: fold {k} holds no image, and nnU-Net cannot validate on an empty fold; "
                              "prepare the data again with fewer folds (--folds).")
        unknown = [i for i in fold if i not in case_of]
        if unknown:
            raise ModiseError(f"{folds_path}: fold {k} lists image id(s) {unknown[:5]} that {PANOPTIC_JSON} does not define.")
    return [{"train": [case_of[i] for j, f in enumerate(folds) if j != k for i in f], "val": [case_of[i] for i in fold]}
            for k, fold in enumerate(folds)]


def _png_bytes(pixels: np.ndarray) -> bytes:
    """Grey [0, 1] pixels as an 8-bit PNG when that is exact (8-bit sources), else 16-bit (DICOM depth kept)."""
    import io

    from PIL import Image

    scaled = pixels.astype(np.float64) * 255.0
    if np.abs(scaled - np.rint(scaled)).max(initial=0) < 1e-3:
        im = Image.fromarray(np.rint(scaled).astype(np.uint8))
    else:
        im = Image.fromarray(np.clip(np.rint(pixels * 65535.0), 0, 65535).astype(np.uint16))
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _label_png(labels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(labels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _check_dataset_id(raw: Path, dataset_id: int, folder: str) -> None:
    if not 1 <= dataset_id <= 999:
        raise ModiseError(f"--dataset-id {dataset_id}: nnU-Net dataset ids have three digits (1..999).")
    if raw.is_dir():
        clash = [p.name for p in raw.glob(f"Dataset{dataset_id:03d}_*") if p.name != folder]
        if clash:
            raise ModiseError(f"'{raw / clash[0]}' already uses nnU-Net dataset id {dataset_id}; choose another --dataset-id.")


def export_nnunet(
    data: str | Path, raw: str | Path, dataset_id: int, name: str | None = None, *, overwrite: bool = False, progress: bool = False
) -> dict[str, Any]:
    """Write ``raw/DatasetNNN_Name`` from the canonical dataset ``data``; return a summary (folder, cases,
    labels, folds). Everything is checked and staged first: on any error nothing is left behind."""
    from modise.data.dataset import load_folds
    from modise.data.imageio import read_image
    from modise.progress import track
    from modise.outputs import output_dir, write_bytes_atomic, write_json_atomic

    data, raw = Path(data), Path(raw)
    pan = load_panoptic_json(data)
    name = clean_dataset_name(name or data.resolve().name)
    folder = dataset_folder_name(dataset_id, name)
    _check_dataset_id(raw, dataset_id, folder)
    cats = pan["categories"]
    names = [str(c["name"]) for c in cats]
    if len(set(names)) != len(names) or "background" in names:
        raise ModiseError(f"{data / PANOPTIC_JSON}: category names must be unique and not 'background' to become nnU-Net labels.")
    label_of = {int(c["id"]): i + 1 for i, c in enumerate(cats)}
    case_of = case_names(pan["images"])
    splits = nnunet_splits(load_folds(data), case_of, data / FOLDS_JSON)
    anns = {int(a["image_id"]): a for a in pan["annotations"]}
    with output_dir(raw / folder, overwrite, [data]) as stage:
        for im in track(sorted(pan["images"], key=lambda im: int(im["id"])), "exporting to nnU-Net", enabled=progress):
            image_id, case = int(im["id"]), case_of[int(im["id"])]
            where = f"{data / PANOPTIC_JSON} image {image_id} ({im['file_name']})"
            ann = anns.get(image_id)
            if ann is None:
                raise ModiseError(f"{where}: has no annotation.")
            pixels = read_image(data / IMAGES_DIR / im["file_name"]).pixels
            ids = read_id_png(data / PANOPTIC_DIR / ann["file_name"])
            if ids.shape != pixels.shape:
                raise ModiseError(f"{where}: its panoptic PNG is {ids.shape}, its image {pixels.shape}.")
            write_bytes_atomic(stage / "imagesTr" / f"{case}_0000{FILE_ENDING}", _png_bytes(pixels))
            write_bytes_atomic(stage / "labelsTr" / f"{case}{FILE_ENDING}", _label_png(semantic_labels(ids, ann["segments_info"], label_of, where)))
        labels = {"background": 0, **{n: i + 1 for i, n in enumerate(names)}}
        write_json_atomic(stage / "dataset.json", {
            "channel_names": {"0": CHANNEL_NAME}, "labels": labels, "numTraining": len(case_of), "file_ending": FILE_ENDING,
            "overwrite_image_reader_writer": "NaturalImage2DIO", "name": name,
            "description": f"exported by modise from {data.resolve()}: semantic lesion labels (instances merged), folds = folds.json",
        })
        write_json_atomic(stage / SPLITS_JSON, splits)
        write_json_atomic(stage / CASES_JSON, {
            "data": str(data.resolve()),
            "cases": {case_of[int(im["id"])]: {"image_id": int(im["id"]), "file_name": im["file_name"]} for im in pan["images"]},
        })
    return {"folder": str(raw / folder), "cases": len(case_of), "labels": labels, "folds": len(splits)}
