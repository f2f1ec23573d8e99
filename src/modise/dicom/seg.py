"""One DICOM Segmentation (SEG) per source image (highdicom), valid by ``dciodvfy``.

Segments (one SEG, BINARY, so they may overlap): first one per predicted lesion *instance*, numbered by
score (1 = highest), labelled class + rank within the class (``mass 1``), the score in its Segment
Description, a Tracking ID / Tracking UID stable per instance (:mod:`modise.dicom.uids`); then one per
class (the union of its instances, as the semantic map), so an image without predictions still gets a
SEG listing every class with empty frames, and a viewer can show either view. An instance segment's
mask equals ``panoptic/<name>.png == segment id`` pixel for pixel.

A mammogram is a projection image (DESIGN.md 4b): the SEG needs no Frame of Reference (it keeps the
source's when there is one), relates to its source by the Derivation Image functional group (same rows
and columns, Spatial Locations Preserved), and copies Patient Orientation (PS3.3 C.7.6.1, Type 2C: the
SEG has no Image Orientation (Patient)) and the laterality (General Series Laterality, PS3.3 C.7.3.1,
and the Frame Anatomy functional group's Frame Laterality, PS3.3 C.7.6.16.2.8).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modise.data.panoptic import Category
from modise.errors import ModiseError

from .codes import property_codes
from .findings import Finding
from .uids import derived_uid

SEG_SERIES_NUMBER = 900
BREAST = ("76752008", "SCT", "Breast")
SIDES = {"L": ("7771000", "SCT", "Left"), "R": ("24028007", "SCT", "Right")}  # CID 244 Laterality


def object_uids(fingerprint: str, source: Any, kind: str) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) of the ``kind`` ("SEG" / "SR") object made from ``source``
    by the model ``fingerprint``: the series per (model, study, kind), the instance per (model, source
    image, kind), so a re-run re-stores the same objects into the same series."""
    return (derived_uid(fingerprint, source.StudyInstanceUID, kind, "series"),
            derived_uid(fingerprint, source.SOPInstanceUID, kind, "instance"))


def algorithm(fingerprint: str) -> Any:
    """Algorithm Identification (PS3.3 C.8.20.2 / CID 7162 Artificial Intelligence) with the model fingerprint."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from modise import __version__

    return hd.AlgorithmIdentificationSequence(name="M-ODISE", version=__version__,
                                              family=codes.cid7162.ArtificialIntelligence,
                                              parameters={"model fingerprint": fingerprint})


def build_seg(source: Any, ids: np.ndarray, findings: Sequence[Finding], categories: Sequence[Category],
              fingerprint: str, *, series_number: int = SEG_SERIES_NUMBER) -> Any:
    """A highdicom ``Segmentation`` of ``source`` (pydicom Dataset of the image that was predicted).

    ids: [H, W] panoptic id map at the source's size; ``findings``: :func:`~modise.dicom.findings.image_findings`
    of it (segments 1..N), followed by one segment per class in ``categories`` order (N+1..N+K)."""
    import highdicom as hd

    from modise import __version__

    rows, cols = int(source.Rows), int(source.Columns)
    if ids.shape != (rows, cols):
        raise ModiseError(f"prediction shape {ids.shape} != source image {(rows, cols)}")
    alg = algorithm(fingerprint)
    sop = source.SOPInstanceUID
    descriptions, planes = [], np.zeros((1, rows, cols, len(findings) + len(categories)), dtype=bool)
    for f in findings:
        descriptions.append(segment_description(f.number, f.label, f.category, f.tracking_uid, alg))
        planes[0, f.box[0], f.box[1], f.number - 1] = f.mask_in_box(ids)
    for k, cat in enumerate(categories):
        number = len(findings) + k + 1
        descriptions.append(segment_description(number, f"{cat.name[:54]} (all)", cat,
                                                derived_uid(fingerprint, sop, "class", cat.id), alg))
        for f in findings:  # the class: the union of its instances (panoptic segments do not overlap)
            if f.category.id == cat.id:
                planes[0, f.box[0], f.box[1], number - 1] |= f.mask_in_box(ids)
    series_uid, instance_uid = object_uids(fingerprint, source, "SEG")
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=planes,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=instance_uid,
        instance_number=int(source.get("InstanceNumber") or 1),
        manufacturer="modise",
        manufacturer_model_name="M-ODISE",
        software_versions=f"modise {__version__}",
        device_serial_number="0",
        omit_empty_frames=False,  # every segment has its frame: an empty prediction is still a valid SEG
        pixel_measures=pixel_measures(source),
        content_label="LESIONS",
        content_description="M-ODISE breast lesions: instances, then classes",
    )
    for i, f in enumerate(findings):
        seg.SegmentSequence[i].SegmentDescription = f.description  # PS3.3 C.8.20.2, Type 3
    dimensions = derived_uid(fingerprint, sop, "SEG", "dimensions")  # highdicom makes a random one
    for item in [*seg.DimensionIndexSequence, *seg.DimensionOrganizationSequence]:
        item.DimensionOrganizationUID = dimensions
    copy_projection_attributes(source, seg)
    return seg


def segment_description(number: int, label: str, category: Category, tracking_uid: str, alg: Any) -> Any:
    """One Segment Sequence item (PS3.3 C.8.20.2): label, the class's property codes, automatic, the
    algorithm, Tracking ID (the label) and Tracking UID."""
    import highdicom as hd

    cat_code, type_code = property_codes(category)
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=label, segmented_property_category=cat_code,
        segmented_property_type=type_code, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=alg, tracking_uid=tracking_uid, tracking_id=label)


def pixel_measures(source: Any) -> Any:
    """Pixel Measures of the SEG (PS3.3 C.7.6.16.2.1): the source's Pixel Spacing (calibrated at the
    patient) if it has one, else its Imager Pixel Spacing (at the detector; not corrected for
    magnification); None without either. Slice Thickness is nominal (1 mm, the source's if it has one):
    a projection has none, but highdicom cannot read its own SEG back without it."""
    import highdicom as hd

    spacing = source.get("PixelSpacing") or source.get("ImagerPixelSpacing")
    if not spacing:
        return None
    return hd.PixelMeasuresSequence(pixel_spacing=[float(v) for v in spacing],
                                    slice_thickness=float(source.get("SliceThickness") or 1.0))


def copy_projection_attributes(source: Any, seg: Any) -> None:
    """What highdicom does not copy from a projection source: Patient Orientation (Type 2C in the
    General Image module when there is no Image Orientation (Patient)), Body Part Examined, and the
    breast's laterality, as each segment's Anatomic Region (breast) with its Anatomic Region Modifier
    (left / right) (PS3.3 C.8.20.2 Segment Description Macro, General Anatomy Optional Macro
    10.5). Not General Series Laterality: dciodvfy refuses it in a SEG (its 2C condition is unmet)."""

    seg.PatientOrientation = source.get("PatientOrientation", "")
    if "BodyPartExamined" in source:
        seg.BodyPartExamined = source.BodyPartExamined
    side = SIDES.get(str(source.get("ImageLaterality") or source.get("Laterality") or ""))
    for segment in seg.SegmentSequence:
        breast = _code_item(BREAST)
        if side is not None:
            breast.AnatomicRegionModifierSequence = [_code_item(side)]
        segment.AnatomicRegionSequence = [breast]


def _code_item(code: tuple[str, str, str]) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
    return item


def dataset_bytes(ds: Any) -> bytes:
    """A highdicom / pydicom dataset as Part 10 file bytes."""
    import io

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_dicom(path: str | Path, ds: Any) -> Path:
    """Write a dataset atomically."""
    from modise.outputs import write_bytes_atomic

    write_bytes_atomic(path, dataset_bytes(ds))
    return Path(path)
