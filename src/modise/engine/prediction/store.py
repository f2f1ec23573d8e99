"""``predict --store``: each image's DICOM SEG and SR sent back by STOW-RS right after they are written.

:func:`write_and_store` runs where :func:`~.records.write_image` runs (the writer thread or a worker
process). An image's stored SOP Instance UIDs go to ``stored/<name>.json`` (its "sent" mark), so
``--resume`` sends what a killed run had written but not yet sent. The SEG/SR UIDs are derived from
the model and the source instance, so sending them again stores nothing new on the server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modise.errors import ModiseError

STORED_DIR = "stored"


@dataclass(frozen=True)
class StoreTarget:
    """Where ``--store`` sends the objects: a DICOMweb root (checked, no credentials; picklable)."""

    url: str


def dicom_outputs(out: Path, name: str) -> list[Path]:
    """The DICOM objects written for image ``name`` (SEG, then SR), where they exist."""
    from .records import dicom_paths

    return [p for p in dicom_paths(Path(out), name) if p.is_file()]


def stored_mark(out: Path, name: str) -> Path:
    return Path(out) / STORED_DIR / f"{name}.json"


def store_image(out: Path, name: str, target: StoreTarget, source: str, label: str, since: float | None = None) -> dict[str, Any]:
    """Send image ``name``'s SEG and SR (written at or after ``since``, a ``time.time()``) in one STOW-RS
    request, then mark them sent. Returns ``stored`` (SOP Instance UIDs) and ``errors`` (``input``: ``label``)."""
    from modise.dicom.dicomweb import display_url, server_for
    from modise.outputs import write_json_atomic

    files = [p for p in dicom_outputs(out, name) if since is None or p.stat().st_mtime >= since - 1.0]
    if not files:
        return {"stored": [], "errors": []}
    what = f"the DICOM {' and '.join('SEG' if 'dicom_seg' in p.parts else 'SR' for p in files)} of {source}"
    try:
        uids = server_for(target.url).store(files, what)
    except ModiseError as e:
        return {"stored": [], "errors": [{"input": label, "error": str(e)}]}
    write_json_atomic(stored_mark(out, name), {"server": display_url(target.url), "sop_instance_uids": uids,
                                               "files": [p.relative_to(out).as_posix() for p in files]})
    return {"stored": uids, "errors": []}


def write_and_store(job: Any, target: StoreTarget | None, source: str, label: str) -> dict[str, Any]:
    """:func:`~.records.write_image`, then (with a ``target``) :func:`store_image` of what it wrote; the
    record returned carries the store's ``stored`` UIDs and its errors."""
    from .records import write_image

    started = time.time()
    record = write_image(job)
    if target is None:
        return record
    sent = store_image(Path(job.out), job.name, target, source, label, since=started)
    return {**record, "errors": [*record["errors"], *sent["errors"]], "stored": sent["stored"]}
