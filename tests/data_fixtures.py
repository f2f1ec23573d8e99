"""Builders of real fixture files (JPEG, xlsx, VIA CSV, DICOM) for the tests; reusable by other parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def blob_image(h: int = 96, w: int = 80, centres=((30, 30, 10),), seed: int = 0) -> np.ndarray:
    """(H, W) uint8 grey image: textured background with bright disks (cx, cy, r)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 60 + 10 * rng.standard_normal((h, w))
    for cx, cy, r in centres:
        img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] += 120
    return np.clip(img, 0, 255).astype(np.uint8)


def write_jpeg(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)
    return path


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    compress_j2k: bool = False,
    laterality: str = "L",
    view: str = "CC",
    patient_id: str = "anon",
) -> Path:
    """Write a real mammography DICOM (16-bit unsigned) with pydicom; optional window, JPEG 2000."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID = "MG", patient_id
    ds.ImageLaterality, ds.ViewPosition, ds.Manufacturer = laterality, view, "fixture"
    arr = np.asarray(pixels, dtype=np.uint16)
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.1, 0.1]
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = arr.tobytes()
    if compress_j2k:
        ds.compress(JPEG2000Lossless, arr)
    ds.save_as(path, enforce_file_format=True)
    pydicom.dcmread(path).pixel_array  # must decode
    return path


def write_mammogram_dicom(path: Path, pixels_u8: np.ndarray, monochrome1: bool = False,
                          spacing_mm: float | None = 0.1) -> Path:
    """A mammography DICOM as a modality writes it (12-bit, window, laterality/view, the patient and
    study attributes a DICOM SEG must copy) from 8-bit pixels; MONOCHROME1 stores them inverted."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    px = pixels_u8.astype(np.uint16) * 16
    if monochrome1:
        px = 4095 - px
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray (presentation)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "P150", "Sample^Patient", "", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "20240101", "120000", "", "", "1"
    ds.SeriesNumber, ds.InstanceNumber, ds.Modality, ds.Manufacturer = 1, 1, "MG", "TEST"
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.ImageLaterality, ds.ViewPosition = "L", "CC"
    if spacing_mm:
        ds.ImagerPixelSpacing = [spacing_mm, spacing_mm]
    ds.PixelData = px.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


VIA_HEADER = "#filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,region_attributes"


def via_row(fname: str, shape: dict | str, rid: int = 0, count: int = 1) -> str:
    s = shape if isinstance(shape, str) else json.dumps(shape)
    s = '"' + s.replace('"', '""') + '"'
    return f'{fname},1234,"{{}}",{count},{rid},{s},"{{}}"'


def make_cdd_cesm(root: Path) -> Path:
    """A miniature CDD-CESM release with every kind of trouble the converter must survive.

    Good: P1_L_DM_CC (Malignant, polygon+ellipse), P1_L_CM_CC (Malignant, circle+polyline),
    P2_R_DM_MLO (Benign, point+rect), P3_L_DM_CC (Normal). Bad: P4_R_DM_CC (no xlsx row),
    P5_L_CM_MLO (truncated JPEG), P6_R_CM_CC (Benign, only broken/unknown/degenerate regions).
    """
    import pandas as pd

    low, sub = root / "Low energy images of CDD-CESM", root / "Subtracted images of CDD-CESM"
    write_jpeg(low / "P1_L_DM_CC.jpg", blob_image(centres=((30, 30, 10), (55, 70, 8)), seed=1))
    write_jpeg(sub / "P1_L_CM_CC.jpg", blob_image(centres=((30, 30, 10), (55, 70, 8)), seed=2))
    write_jpeg(low / "P2_R_DM_MLO.jpg", blob_image(centres=((40, 40, 9),), seed=3))
    write_jpeg(low / "P3_L_DM_CC.jpg", blob_image(centres=(), seed=4))
    write_jpeg(low / "P4_R_DM_CC.jpg", blob_image(seed=5))
    good = write_jpeg(sub / "P5_L_CM_MLO.jpg", blob_image(seed=6)).read_bytes()
    (sub / "P5_L_CM_MLO.jpg").write_bytes(good[: len(good) // 2])  # truncated
    write_jpeg(sub / "P6_R_CM_CC.jpg", blob_image(seed=7))
    pd.DataFrame(
        {
            "Image_name": ["P1_L_DM_CC", "P1_L_CM_CC ", " P2_R_DM_MLO", "P3_L_DM_CC", "P5_L_CM_MLO", "P6_R_CM_CC"],
            "Patient_ID": ["1", "1", "2", "3", "5", "6"],
            "Side": ["L", "L", "R", "L", "L", "R"],
            "Type": ["DM", "CESM", "DM", "DM", "CESM", "CESM"],
            "View": ["CC", "CC", "MLO", "CC", "MLO", "CC"],
            "Pathology Classification/ Follow up": ["Malignant", "Malignant", "Benign", "Normal", "Benign", "Benign"],
        }
    ).to_excel(root / "Radiology manual annotations.xlsx", index=False)
    rows = [
        VIA_HEADER,
        via_row("P1_L_DM_CC.jpg", {"name": "polygon", "all_points_x": [20, 40, 40, 20], "all_points_y": [20, 20, 40, 40]}),
        via_row("P1_L_DM_CC.jpg", {"name": "ellipse", "cx": 55, "cy": 70, "rx": 8, "ry": 6, "theta": 0.3}, 1, 2),
        via_row("P1_L_CM_CC.jpg", {"name": "circle", "cx": 30, "cy": 30, "r": 10}),
        via_row("P1_L_CM_CC.jpg", {"name": "polyline", "all_points_x": [48, 62, 62, 48], "all_points_y": [62, 62, 78, 78]}, 1, 2),
        via_row("P2_R_DM_MLO.jpg", {"name": "point", "cx": 40, "cy": 40}),
        via_row("P2_R_DM_MLO.jpg", {"name": "rect", "x": 5, "y": 60, "width": 12, "height": 10}, 1, 2),
        via_row("P6_R_CM_CC.jpg", '{"name": "polygon", "all_points_x": [1, 2'),  # broken JSON
        via_row("P6_R_CM_CC.jpg", {"name": "hexagon", "cx": 3}, 1, 3),  # unknown shape
        via_row("P6_R_CM_CC.jpg", {"name": "polygon", "all_points_x": [5, 10, 15], "all_points_y": [5, 5, 5]}, 2, 3),
    ]
    (root / "Radiology_hand_drawn_segmentations_v2.csv").write_text("\n".join(rows) + "\n")
    return root


VINDR_COLUMNS = "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,finding_categories,finding_birads,xmin,ymin,xmax,ymax,split"


def make_vindr(root: Path) -> Path:
    """A miniature VinDr-Mammo: MONOCHROME1, JPEG 2000, windowed DICOMs and a garbage file.

    Images 96x80 with a dense blob at (30, 40) r=10. im1: MONOCHROME1 (bright lesion stored
    dark), BI-RADS 4 box + a box partly outside; im2: JPEG 2000 lossless, BI-RADS 3 and a
    row without grade; im3: VOI window, BI-RADS 5 (im1 has the box partly outside); im4: garbage bytes; im5: No Finding only.
    """
    def raw(seed: int, mono1: bool = False) -> np.ndarray:
        px = blob_image(centres=((30, 40, 10),), seed=seed).astype(np.float64) * 16  # 12-bit range
        return (4095 - px) if mono1 else px

    img = root / "images"
    write_dicom(img / "s1" / "im1.dicom", raw(1, True), photometric="MONOCHROME1")
    write_dicom(img / "s2" / "im2.dicom", raw(2), compress_j2k=True, laterality="R", view="MLO")
    write_dicom(img / "s3" / "im3.dicom", raw(3), window=(1600, 3000))
    (img / "s4").mkdir(parents=True)
    (img / "s4" / "im4.dicom").write_bytes(b"this is not a dicom file" * 10)
    write_dicom(img / "s5" / "im5.dicom", raw(5))
    rows = [
        VINDR_COLUMNS,
        "s1,x,im1,L,CC,96,80,BI-RADS 4,DENSITY C,\"['Mass']\",BI-RADS 4,18.5,28.0,42.2,52.9,training",
        "s1,x,im1,L,CC,96,80,BI-RADS 4,DENSITY C,\"['Mass']\",BI-RADS 4,60.0,80.0,95.0,120.0,training",
        "s2,x,im2,R,MLO,96,80,BI-RADS 3,DENSITY B,\"['Mass', 'Focal Asymmetry']\",BI-RADS 3,19,29,41,51,test",
        "s2,x,im2,R,MLO,96,80,BI-RADS 3,DENSITY B,\"['Architectural Distortion']\",,5,5,15,15,test",
        "s3,x,im3,L,CC,96,80,BI-RADS 5,DENSITY A,\"['Mass']\",BI-RADS 5,18,28,42.5,52,training",
        "s4,x,im4,L,CC,96,80,BI-RADS 4,DENSITY C,\"['Mass']\",BI-RADS 4,10,10,30,30,training",
        "s5,x,im5,R,CC,96,80,BI-RADS 1,DENSITY B,\"['No Finding']\",,,,,,training",
    ]
    (root / "finding_annotations.csv").write_text("\n".join(rows) + "\n")
    return root


def train_tiny_run(root: Path, *, n: int, seed: int, k: int, fold: int) -> Path:
    """Phantoms in ``root/data`` and a 2-step tiny m-odise run in ``root/run`` (fold ``fold`` held out),
    thresholds 0 so that an untrained model still keeps segments. Returns ``root``."""
    from modise.data.phantoms import prepare_synthetic
    from modise.engine.training.config import TrainConfig
    from modise.engine.training.train import train

    prepare_synthetic(root / "data", n=n, seed=seed, size=128, k=k, quiet=True)
    cfg = TrainConfig(preset="m-odise", size="tiny", data=str(root / "data"), fold=fold, random_weights=True,
                      image_size=128, batch_size=2, max_steps=2, accelerator="cpu", devices=1,
                      model_overrides={"inference": {"object_mask_threshold": 0.0, "overlap_threshold": 0.0}})
    train(cfg, root / "run", progress=False)
    return root


DCIODVFY = "/usr/bin/dciodvfy"


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dciodvfy (Debian dicom3tools, the standard's IOD validator) reports for ``path``;
    fails, naming the package, when the validator is not installed (the README test command installs it)."""
    import subprocess

    assert Path(DCIODVFY).exists(), f"{DCIODVFY} missing: install Debian's dicom3tools package (see the README test command)"
    r = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=120)
    lines = (r.stdout + r.stderr).splitlines()
    assert not any(line.startswith("Abort") for line in lines), f"dciodvfy could not read {path}: {lines}"
    return [line for line in lines if line.startswith("Error")]


def sample_pixels(path: Path, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A real sample mammogram (JPEG) as 8-bit grey, resized to ``size`` (rows, columns)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((size[1], size[0]), Image.BILINEAR))


def write_mg_dicom(path: Path, pixels_u8: np.ndarray, *, spacing: str = "imager", voi: str = "window",
                   monochrome1: bool = False, frame_of_reference: bool = False, laterality: str = "L",
                   view: str = "CC", study_uid: str | None = None, sop_uid: str | None = None,
                   instance_number: int = 1) -> Path:
    """A Digital Mammography X-Ray Image For Presentation that dciodvfy passes with 0 Errors (PS3.3 A.26.2:
    DX Series / Image / Detector, Mammography Series / Image, VOI LUT, Acquisition Context modules), from
    8-bit pixels stored as 12 bits. ``spacing``: "imager" (Imager Pixel Spacing 0.1 mm only, as most
    detectors write it), "both" (+ Pixel Spacing 0.085 mm, magnification-corrected) or "none" (not a
    valid MG image then: Imager Pixel Spacing is Type 1; for the areas-in-pixels path);
    ``voi``: "window" or "lut" (a VOI LUT Sequence); ``monochrome1`` stores the pixels inverted."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def code(value: str, scheme: str, meaning: str) -> Dataset:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
        return item

    px = pixels_u8.astype(np.uint16) * 16
    if monochrome1:
        px = 4095 - px
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image - For Presentation
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid or generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "P27", "Sample^Patient", "", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "20240101", "120000", "", "", "1"
    ds.ContentDate, ds.ContentTime = "20240101", "120000"
    ds.SeriesNumber, ds.InstanceNumber, ds.Modality, ds.Manufacturer = 1, instance_number, "MG", "TEST"
    ds.BodyPartExamined = "BREAST"
    ds.PresentationIntentType = "FOR PRESENTATION"
    if frame_of_reference:
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = generate_uid(), ""
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LOG", -1 if monochrome1 else 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
    ds.LossyImageCompression, ds.BurnedInAnnotation = "00", "NO"
    ds.PatientOrientation = ["P", "R"] if laterality == "L" else ["A", "L"]  # nipple towards the column direction
    ds.ImageLaterality, ds.ViewPosition = laterality, view
    ds.DetectorType, ds.PositionerType, ds.OrganExposed = "DIRECT", "MAMMOGRAPHIC", "BREAST"
    ds.AnatomicRegionSequence = [code("76752008", "SCT", "Breast")]
    views = {"CC": ("399162004", "SCT", "cranio-caudal"), "MLO": ("399368009", "SCT", "medio-lateral oblique")}
    view_code = code(*views[view])
    view_code.ViewModifierCodeSequence = []
    ds.ViewCodeSequence = [view_code]
    ds.AcquisitionContextSequence = []
    if spacing in ("imager", "both"):
        ds.ImagerPixelSpacing = [0.1, 0.1]
    if spacing == "both":
        ds.PixelSpacing = [0.085, 0.085]
        ds.PixelSpacingCalibrationType, ds.PixelSpacingCalibrationDescription = "GEOMETRY", "magnification corrected"
    if voi == "window":
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
    else:
        lut = Dataset()
        lut.LUTDescriptor, lut.LUTExplanation = [4096, 0, 12], "linear"
        lut.add_new(0x00283006, "US", np.arange(4096, dtype=np.uint16).tolist())  # LUT Data
        ds.VOILUTSequence = [lut]
    ds.PixelData = px.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
