"""One DICOM Structured Report per source image: a TID 1500 Measurement Report (highdicom), valid by
``dciodvfy``.

One TID 1410 Planar ROI measurement group per predicted instance (PS3.16 TID 1500 / 1410): Tracking
Identifier and Tracking UID (the SEG segment's), Finding Category and Finding (the segment's property
codes, :mod:`modise.dicom.codes`), the algorithm, Finding Site (breast, with the image's laterality), the
region as a reference to its SEG segment (which references the source image) and the measurements:

- Area (SCT 42798000) in mm2 (UCUM) from the source's Pixel Spacing, else its Imager Pixel Spacing
  (then the method says "Imager Pixel Spacing", i.e. at the detector, not corrected for
  magnification), else in pixels (UCUM ``{pixels}``);
- Certainty of Finding (DCM 111012, as in the Mammography CAD SR, CID 6048): the model's score, in %;
- centroid column and row (private codes ``99MODISE``, PS3.16 8.1; unit ``{pixels}``), in DICOM image
  coordinates (the centre of the top-left pixel is 0.5, 0.5). TID 1410 has no centroid item and
  allows a region *or* a segment, not both, so the centroid is a pair of measurements.

The SR is a Comprehensive SR (TID 1500 needs no SCOORD3D: the source is a projection image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .codes import property_codes
from .findings import Finding
from .seg import BREAST, object_uids

SR_SERIES_NUMBER = 901
PRIVATE_SCHEME = "99MODISE"
METHOD_VALUES = {"Pixel Spacing": "area-ps", "Imager Pixel Spacing": "area-ips"}  # code values are SH: 16 chars


def build_sr(source: Any, seg: Any, findings: Sequence[Finding], fingerprint: str, *,
             series_number: int = SR_SERIES_NUMBER) -> Any:
    """A highdicom ``ComprehensiveSR`` (TID 1500) of ``findings``, referencing ``seg`` (built by
    :func:`~modise.dicom.seg.build_seg` from the same findings) and ``source``."""
    import highdicom as hd
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    from modise import __version__

    spacing, spacing_name = area_spacing(source)
    area_unit = codes.UCUM.SquareMillimeter if spacing else CodedConcept("{pixels}", "UCUM", "pixels")
    pixels = CodedConcept("{pixels}", "UCUM", "pixels")
    algorithm = hd.sr.AlgorithmIdentification(name="M-ODISE", version=__version__,
                                              parameters=[f"model fingerprint {fingerprint}"])
    seg_image = hd.sr.SourceImageForSegmentation.from_source_image(source)
    site = finding_site(source)
    groups = []
    for f in findings:
        category, finding_type = property_codes(f.category)
        area = f.area_px * spacing[0] * spacing[1] if spacing else float(f.area_px)
        method = CodedConcept(METHOD_VALUES[spacing_name], PRIVATE_SCHEME, f"Pixel count x {spacing_name}") if spacing else None
        measurements = [
            hd.sr.Measurement(name=codes.SCT.Area, value=area, unit=area_unit, method=method, algorithm_id=algorithm),
            hd.sr.Measurement(name=CodedConcept("centroid-column", PRIVATE_SCHEME, "Centroid column"),
                              value=f.centroid[0], unit=pixels, algorithm_id=algorithm),
            hd.sr.Measurement(name=CodedConcept("centroid-row", PRIVATE_SCHEME, "Centroid row"),
                              value=f.centroid[1], unit=pixels, algorithm_id=algorithm),
        ]
        if f.score is not None:
            measurements.insert(1, hd.sr.Measurement(name=codes.DCM.CertaintyOfFinding, value=100.0 * f.score,
                                                     unit=codes.UCUM.Percent, algorithm_id=algorithm))
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=f.tracking_uid, identifier=f.label),
            referenced_segment=hd.sr.ReferencedSegmentationFrame(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                frame_number=f.number, segment_number=f.number, source_image=seg_image),
            finding_type=finding_type, finding_category=category, algorithm_id=algorithm,
            finding_sites=[site] if site is not None else None, measurements=measurements))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid_of_device(fingerprint), name="modise", model_name="M-ODISE", manufacturer_name="modise"))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.Mammography,
        imaging_measurements=groups or [no_findings_group(source, fingerprint, algorithm, site)],
        referenced_images=[source] if image_library_ready(source) else None)
    series_uid, instance_uid = object_uids(fingerprint, source, "SR")
    sr = hd.sr.ComprehensiveSR(
        evidence=[source, seg], content=report, series_instance_uid=series_uid, series_number=series_number,
        sop_instance_uid=instance_uid, instance_number=int(source.get("InstanceNumber") or 1),
        manufacturer="modise", is_complete=True, is_final=False, is_verified=False)
    drop_frame_beside_segment(sr)
    return sr


def drop_frame_beside_segment(ds: Any) -> None:
    """Remove Referenced Frame Number where Referenced Segment Number is given (in place, at any depth).

    PS3.3 C.10.5 (Image SOP Instance Reference Macro): each of the two is required only when the other
    is absent, and dciodvfy refuses both; highdicom's ReferencedSegmentationFrame writes both. The
    segment number alone names the segment's one frame of a single-image SEG."""
    for item in ds.get("ContentSequence") or []:
        for ref in item.get("ReferencedSOPSequence") or []:
            if "ReferencedSegmentNumber" in ref and "ReferencedFrameNumber" in ref:
                del ref.ReferencedFrameNumber
        drop_frame_beside_segment(item)


def no_findings_group(source: Any, fingerprint: str, algorithm: Any, site: Any) -> Any:
    """The one TID 1501 group of an image without predicted instances (TID 1500 needs at least one):
    CAD Processing and Findings Summary = All algorithms succeeded; without findings (CID 6047, the
    Mammography CAD SR's summary), for the source image."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from .uids import derived_uid

    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=derived_uid(fingerprint, source.SOPInstanceUID, "no findings"),
                                                     identifier="no lesions"),
        algorithm_id=algorithm, finding_sites=[site] if site is not None else None,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            name=codes.DCM.CADProcessingAndFindingsSummary, value=codes.DCM.AllAlgorithmsSucceededWithoutFindings)],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)])


def image_library_ready(source: Any) -> bool:
    """Whether highdicom can describe the source in the report's Image Library (TID 1600, optional in
    TID 1500): for a projection image (TID 1603) it reads Patient Orientation and Imager Pixel Spacing."""
    return "ImagerPixelSpacing" in source and len(source.get("PatientOrientation") or []) == 2


def area_spacing(source: Any) -> tuple[tuple[float, float] | None, str]:
    """(row, column) spacing in mm the areas use and its name: Pixel Spacing (calibrated at the patient),
    else Imager Pixel Spacing (at the detector), else (None, "pixels")."""
    for keyword, name in (("PixelSpacing", "Pixel Spacing"), ("ImagerPixelSpacing", "Imager Pixel Spacing")):
        value = source.get(keyword)
        if value:
            return (float(value[0]), float(value[1])), name
    return None, "pixels"


def finding_site(source: Any) -> Any:
    """Finding Site: the breast, with the image's laterality (SCT Left / Right) when it says one."""
    import highdicom as hd
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    side = {"L": codes.SCT.Left, "R": codes.SCT.Right}.get(str(source.get("ImageLaterality") or source.get("Laterality") or ""))
    value, scheme, meaning = BREAST
    return hd.sr.FindingSite(anatomic_location=CodedConcept(value, scheme, meaning), laterality=side)


def derived_uid_of_device(fingerprint: str) -> str:
    from .uids import derived_uid

    return derived_uid(fingerprint, "device")
