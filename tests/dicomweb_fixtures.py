"""A PACS study for the DICOMweb tests, written with pydicom: MG images from the real sample mammograms
(resized small), and what a real study also holds (a CT image, an MG "FOR PROCESSING", a corrupt MG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_fixtures import write_mammogram_dicom


def mg_study(folder: Path, jpegs: list[Path], *, size: tuple[int, int] = (160, 128), patient: str = "P150",
             study_date: str = "20260115") -> tuple[str, list[Path]]:
    """One study (new Study Instance UID, one series) of MG DICOMs from ``jpegs``, resized to ``size`` (H, W),
    alternating L/R CC/MLO. Returns the study UID and the files."""
    import pydicom
    from PIL import Image
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    files = []
    for i, jpg in enumerate(jpegs):
        pixels = np.asarray(Image.open(jpg).convert("L").resize(size[::-1], Image.BILINEAR))
        path = write_mammogram_dicom(folder / f"mg{i}.dcm", pixels)
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, series, i + 1
        ds.PatientID, ds.StudyDate = patient, study_date
        ds.ImageLaterality, ds.ViewPosition = "LR"[i % 2], ("CC", "MLO")[(i // 2) % 2]
        ds.PatientOrientation = ["P", "L"] if i % 2 == 0 else ["A", "R"]
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return study, files


def sibling(template: Path, path: Path, *, modality: str | None = None, sop_class: str | None = None,
            intent: str | None = None, truncate_pixels: bool = False) -> Path:
    """A new instance in ``template``'s study and series, changed as asked: another modality / SOP class
    (a CT image), "FOR PROCESSING", or pixel data cut in half (a corrupt image a PACS still stores)."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(template)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber = int(ds.InstanceNumber) + 100
    if modality is not None:
        ds.Modality = modality
        ds.SeriesInstanceUID = generate_uid()  # another modality is another series
    if sop_class is not None:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    if intent is not None:
        ds.PresentationIntentType = intent
    if truncate_pixels:
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(path, enforce_file_format=True)
    return path


CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
