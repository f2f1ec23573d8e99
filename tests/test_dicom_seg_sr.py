"""DICOM SEG + TID 1500 SR of one predicted image (:mod:`modise.dicom`), from real sample mammograms
written as valid MG DICOMs: dciodvfy reports 0 Errors on the source, the SEG and the SR for every kind
of source; highdicom reads both back; the SEG's instance masks are the panoptic ids; UIDs are derived."""

from __future__ import annotations

import numpy as np
import pytest

from modise.data.panoptic import Category

from data_fixtures import dciodvfy_errors, sample_pixels, write_mg_dicom

CATS = [Category(1, "circumscribed_mass"), Category(2, "Suspicious Calcification"), Category(3, "architectural distortion")]
FP = "0" * 64  # a model fingerprint
SHAPE = (96, 128)


def predicted_ids(sample_dir, sample_images) -> tuple[np.ndarray, list[dict]]:
    """A panoptic id map [H, W] and its segments: the radiologist's mask of a real sample (a mass) and
    two disks (a calcification, a second, lower-scoring mass); no architectural distortion."""
    mask = sample_pixels(sample_dir / "masks" / sample_images[0].name, SHAPE) >= 128
    ids = np.zeros(SHAPE, np.int32)
    ids[mask] = 7
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    ids[((yy - 20) ** 2 + (xx - 100) ** 2 <= 36) & ~mask] = 3
    ids[((yy - 80) ** 2 + (xx - 110) ** 2 <= 49) & ~mask] = 5
    segs = [{"id": 7, "category_id": 1, "score": 0.91}, {"id": 3, "category_id": 2, "score": 0.97},
            {"id": 5, "category_id": 1, "score": 0.42}]
    return ids, segs


SOURCES = {  # name: write_mg_dicom options
    "mg": {},
    "both-spacings": {"spacing": "both", "frame_of_reference": True, "laterality": "R", "view": "MLO"},
    "voi-lut-monochrome1": {"voi": "lut", "monochrome1": True},
}


@pytest.mark.parametrize("empty", [False, True], ids=["several-classes", "empty"])
@pytest.mark.parametrize("kind", list(SOURCES))
def test_seg_and_sr_pass_dciodvfy_and_read_back(tmp_path, sample_dir, sample_images, kind, empty):
    import highdicom as hd
    import pydicom

    from modise.dicom.results import write_results

    src_path = write_mg_dicom(tmp_path / "mg.dcm", sample_pixels(sample_images[0], SHAPE), **SOURCES[kind])
    assert dciodvfy_errors(src_path) == []  # the source itself is a valid MG image
    src = pydicom.dcmread(src_path)
    ids, segs = predicted_ids(sample_dir, sample_images)
    if empty:
        ids, segs = np.zeros_like(ids), []
    seg_path, sr_path = write_results(tmp_path / "seg.dcm", tmp_path / "sr.dcm", src, ids, segs, CATS, FP)
    assert dciodvfy_errors(seg_path) == []
    assert dciodvfy_errors(sr_path) == []

    seg = hd.seg.segread(seg_path)
    assert seg.StudyInstanceUID == src.StudyInstanceUID and seg.PatientID == src.PatientID
    assert seg.PatientOrientation == src.PatientOrientation
    assert "FrameOfReferenceUID" not in seg or seg.FrameOfReferenceUID == src.FrameOfReferenceUID
    refs = [r.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence]
    assert refs == [src.SOPInstanceUID]
    planes = seg.get_pixels_by_source_instance([src.SOPInstanceUID], combine_segments=False)[0]
    order = sorted(segs, key=lambda s: -s["score"])  # instances by score, then one segment per class
    assert planes.shape == (*SHAPE, len(order) + len(CATS))
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    if not empty:
        assert labels[:3] == ["Suspicious Calcification 1", "circumscribed_mass 1", "circumscribed_mass 2"]
        assert "score 0.9700" in seg.SegmentSequence[0].SegmentDescription
    assert labels[len(order):] == [f"{c.name} (all)" for c in CATS]
    for k, s in enumerate(order):  # each instance segment is its panoptic segment, pixel for pixel
        assert np.array_equal(planes[..., k].astype(bool), ids == s["id"])
    for k, cat in enumerate(CATS):
        members = [s["id"] for s in segs if s["category_id"] == cat.id]
        assert np.array_equal(planes[..., len(order) + k].astype(bool), np.isin(ids, members))
    side = {"L": "Left", "R": "Right"}[src.ImageLaterality]
    assert seg.SegmentSequence[0].AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0].CodeMeaning == side

    sr = hd.sr.srread(sr_path)
    evidence = {r.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for se in s.ReferencedSeriesSequence for r in se.ReferencedSOPSequence}
    assert evidence == {src.SOPInstanceUID, seg.SOPInstanceUID}
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == len(order)
    spacing = src.get("PixelSpacing") or src.ImagerPixelSpacing  # calibrated spacing first
    for number, (g, s) in enumerate(zip(groups, order), start=1):
        ref = g.referenced_segmentation_frame
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID and ref.referenced_segment_numbers == [number]
        assert g.tracking_uid == seg.SegmentSequence[number - 1].TrackingUID
        values = {m.name.meaning: (m.value, m.unit.value) for m in g.get_measurements()}
        mask = ids == s["id"]
        assert values["Area"] == (pytest.approx(mask.sum() * float(spacing[0]) * float(spacing[1])), "mm2")
        assert values["Certainty of Finding"] == (pytest.approx(100 * s["score"]), "%")
        rows, cols = np.nonzero(mask)
        assert values["Centroid column"][0] == pytest.approx(cols.mean() + 0.5)
        assert values["Centroid row"][0] == pytest.approx(rows.mean() + 0.5)
        assert g.finding_type.value == ("309587003" if s["category_id"] == 2 else "4147007")
        assert g.finding_category.value == "49755003"
        assert [site.value.value for site in g.finding_sites] == ["76752008"]
    if empty:
        assert len(sr.content.get_image_measurement_groups()) == 1  # "without findings", for the image


def test_areas_in_pixels_without_spacing(tmp_path, sample_dir, sample_images):
    import highdicom as hd
    import pydicom

    from modise.dicom.results import build_results

    src = pydicom.dcmread(write_mg_dicom(tmp_path / "mg.dcm", sample_pixels(sample_images[1], SHAPE), spacing="none"))
    ids, segs = predicted_ids(sample_dir, sample_images)
    seg, sr = build_results(src, ids, segs, CATS, FP)
    assert "PixelMeasuresSequence" not in seg.SharedFunctionalGroupsSequence[0]
    group = hd.sr.srread(_saved(tmp_path / "sr.dcm", sr)).content.get_planar_roi_measurement_groups()[1]
    area = next(m for m in group.get_measurements() if m.name.meaning == "Area")
    assert (area.value, area.unit.value) == ((ids == 7).sum(), "{pixels}")


def test_uids_are_derived_from_model_and_source(tmp_path, sample_dir, sample_images):
    import pydicom

    from modise.dicom.results import build_results

    src = pydicom.dcmread(write_mg_dicom(tmp_path / "mg.dcm", sample_pixels(sample_images[0], SHAPE)))
    other = pydicom.dcmread(write_mg_dicom(tmp_path / "mg2.dcm", sample_pixels(sample_images[1], SHAPE),
                                           study_uid=src.StudyInstanceUID))
    ids, segs = predicted_ids(sample_dir, sample_images)

    def uids(source, fingerprint):
        seg, sr = build_results(source, ids, segs, CATS, fingerprint)
        return {"seg": seg.SOPInstanceUID, "seg series": seg.SeriesInstanceUID, "sr": sr.SOPInstanceUID,
                "sr series": sr.SeriesInstanceUID, "tracking": tuple(s.TrackingUID for s in seg.SegmentSequence)}

    first = uids(src, FP)
    assert uids(src, FP) == first  # a re-run stores the same objects
    assert all(u.startswith("2.25.") and len(u) <= 64 for u in [*list(first.values())[:4], *first["tracking"]])
    assert len({first["seg"], first["sr"], first["seg series"], first["sr series"]}) == 4
    changed = uids(src, "1" * 64)  # another model or other settings: all new
    assert all(changed[k] != first[k] for k in ("seg", "seg series", "sr", "sr series"))
    assert not set(changed["tracking"]) & set(first["tracking"])
    same_study = uids(other, FP)  # another image of the study: its own objects, in the same series
    assert same_study["seg"] != first["seg"] and same_study["seg series"] == first["seg series"]


def test_source_of_another_size_is_refused(tmp_path, sample_images):
    import pydicom

    from modise.dicom.results import build_results
    from modise.errors import ModiseError

    src = pydicom.dcmread(write_mg_dicom(tmp_path / "mg.dcm", sample_pixels(sample_images[0], SHAPE)))
    with pytest.raises(ModiseError, match="prediction shape"):
        build_results(src, np.zeros((10, 10), np.int32), [], CATS, FP)


def _saved(path, ds):
    from modise.dicom.seg import write_dicom

    return write_dicom(path, ds)
