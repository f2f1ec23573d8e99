"""One predicted image written completely, then recorded; the merged JSON rebuilt from the records.

Each image's files (``panoptic/<name>.png``, heatmaps, overlay, DICOM SEG and SR) are written atomically, and
``records/<name>.json`` (its ``images`` entry, annotation, instances, problems) last: an image is done
when its record exists, which is what ``predict --resume`` skips and what every rank of a multi-device
run leaves for the merge. :func:`write_image` runs in a writer thread or a worker process.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.panoptic import INSTANCES_JSON, PANOPTIC_JSON, Category, PanopticFolderWriter

RECORDS_DIR = "records"
SUMMARY_JSON = "summary.json"


@dataclass
class ImageJob:
    """Everything one image's files are written from (picklable: it travels to a worker process)."""

    out: Path
    name: str
    path: Path
    image_id: int | None  # the prepared dataset's id, else assigned in input order by the merge
    result: Any  # PanopticResult
    pixels: np.ndarray
    dataset: Any  # the pydicom Dataset of a DICOM input, for its SEG / SR
    categories: list[Category]
    heatmaps: bool
    overlays: bool
    dicom_seg: bool  # dicom_seg/<name>_seg.dcm for a DICOM input
    instances: bool
    dicom_sr: bool = False  # also dicom_sr/<name>_sr.dcm (TID 1500, referencing the SEG); needs dicom_seg
    fingerprint: str = ""  # modise.dicom.uids.model_fingerprint of the model + settings: the SEG/SR UIDs derive from it


def record_path(out: Path, name: str) -> Path:
    return Path(out) / RECORDS_DIR / f"{name}.json"


def write_image(job: ImageJob) -> dict[str, Any]:
    """Write one image's outputs, then its record (returned)."""
    from modise.outputs import write_json_atomic

    res, cats, out = job.result, job.categories, Path(job.out)
    writer = PanopticFolderWriter(out, cats)
    image = {"id": job.image_id, "file_name": job.path.name, "source": str(job.path)}
    ann = res.write(writer, image, png_name=f"{job.name}.png", instances=job.instances)
    errors = []
    if job.heatmaps:
        write_heatmaps(out / "heatmaps", job.name, res.sem_seg, cats)
    if job.overlays:
        from modise.outputs import write_bytes_atomic
        from modise.viz.overlays import figure2

        write_bytes_atomic(out / "overlays" / f"{job.name}.png", png_bytes(figure2(job.pixels, res, cats)))
    if job.dicom_seg and job.dataset is not None:
        errors += write_dicom_objects(job, ann["segments_info"])
    record = {"image": writer.images[0], "annotation": ann, "instances": writer.instances, "errors": errors}
    write_json_atomic(record_path(out, job.name), record)
    return record


def dicom_paths(out: Path, name: str) -> tuple[Path, Path]:
    """Where an image's SEG and SR go: ``dicom_seg/<name>_seg.dcm``, ``dicom_sr/<name>_sr.dcm``."""
    return Path(out) / "dicom_seg" / f"{name}_seg.dcm", Path(out) / "dicom_sr" / f"{name}_sr.dcm"


def write_dicom_objects(job: ImageJob, segments_info: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Write the job's SEG (and SR); the problem, named, when the source cannot carry them."""
    from modise.dicom.results import write_results

    seg_path, sr_path = dicom_paths(job.out, job.name)
    try:
        write_results(seg_path, sr_path if job.dicom_sr else None, job.dataset, job.result.ids, segments_info,
                      job.categories, job.fingerprint)
    except Exception as e:  # noqa: BLE001  highdicom rejects some sources (e.g. missing UIDs); the rest is kept
        what = "DICOM SEG/SR" if job.dicom_sr else "DICOM SEG"
        return [{"input": str(job.path), "error": f"{what} not written: {type(e).__name__}: {e}"}]
    return []


def png_bytes(image: Any, compress_level: int = 1) -> bytes:
    """A PIL image as PNG bytes, zlib level 1 (fast; the pixels are what matter)."""
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def write_heatmaps(folder: Path, name: str, sem_seg: np.ndarray, categories: Sequence[Any]) -> None:
    """``folder/<name>_<class>.png``: per-class probability [K, H, W] x 255 as 8-bit grey."""
    from PIL import Image

    from modise.outputs import write_bytes_atomic

    for k, cat in enumerate(categories):
        grey = Image.fromarray(np.clip(np.rint(sem_seg[k] * 255), 0, 255).astype(np.uint8))
        write_bytes_atomic(folder / f"{name}_{_safe(cat.name)}.png", png_bytes(grey))


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def merge_records(out: Path, names: Sequence[str], categories: Sequence[Category], info: dict[str, Any],
                  next_id: int) -> tuple[PanopticFolderWriter, list[dict[str, str]]]:
    """Rebuild ``panoptic.json`` / ``instances.json`` from the records of ``names`` (input order; images
    without a dataset id numbered from ``next_id`` in that order). Returns the writer and the records' problems."""
    merged = PanopticFolderWriter(out, categories, info=info)
    errors: list[dict[str, str]] = []
    for name in names:
        p = record_path(out, name)
        if not p.is_file():
            continue
        rec = json.loads(p.read_text())
        image = rec["image"]
        if image["id"] is None:
            image["id"], next_id = next_id, next_id + 1
        merged.images.append(image)
        merged.annotations.append({**rec["annotation"], "image_id": image["id"]})
        if rec["instances"] is not None:
            merged.instances = (merged.instances or []) + [{**r, "image_id": image["id"]} for r in rec["instances"]]
        errors += rec["errors"]
    return merged, errors


def clear_merged(out: Path) -> None:
    """Remove the merged files of an earlier (complete) run, so a half-done folder never looks finished."""
    for f in (PANOPTIC_JSON, INSTANCES_JSON, SUMMARY_JSON):
        (Path(out) / f).unlink(missing_ok=True)
