"""Segment tab: open a study's image from the DICOMweb server ``modise serve --dicomweb-url`` names.

A Study Instance UID lists the study's MG / DX-for-presentation images (QIDO-RS); the one picked is
retrieved (WADO-RS) into the server's temporary folder and goes into the upload box, so the Segment
button treats it as an uploaded DICOM (its SEG and SR among the downloads). Credentials as for
``modise predict``: only from the environment.
"""

from __future__ import annotations

from pathlib import Path

from modise.app.state import AppState
from modise.errors import ModiseError


def _server(state: AppState):
    from modise.dicom.dicomweb import server_for

    if not state.settings.dicomweb_url:
        raise ModiseError("No DICOMweb server: start modise serve with --dicomweb-url http://HOST/dicom-web.")
    return server_for(state.settings.dicomweb_url)


def study_images(state: AppState, study_uid: str | None) -> list[tuple[str, str]]:
    """(label, ``series/sop``) of each image of the study that modise predicts, in study order."""
    from modise.engine.prediction.inputs import collect_remote

    uid = (study_uid or "").strip()
    if not uid:
        raise ModiseError("Enter a Study Instance UID.")
    items, _ = collect_remote(_server(state).url, {"StudyInstanceUID": uid})
    return [(" ".join(x for x in (i.laterality, i.view, f"#{i.instance_number or '?'}", i.sop) if x), f"{i.series}/{i.sop}")
            for i in (item.remote for item in items)]


def open_image(state: AppState, study_uid: str, choice: str) -> Path:
    """Retrieve the chosen image into a fresh job folder; its path (``<SOP Instance UID>.dcm``)."""
    from modise.dicom.dicomweb import RemoteInstance

    series, _, sop = (choice or "").partition("/")
    if not sop:
        raise ModiseError("Pick an image of the study first.")
    server = _server(state)
    ds = server.retrieve(RemoteInstance(server.url, (study_uid or "").strip(), series, sop))
    path = state.job_dir("pacs") / f"{sop}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path
