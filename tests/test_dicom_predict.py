"""``modise predict --dicom`` on a tiny trained run: a SEG and a TID 1500 SR per DICOM input that
dciodvfy passes, whose instance masks are the panoptic PNG's ids, with UIDs that a re-run repeats and
other settings change."""

from __future__ import annotations

import json

import numpy as np
import pytest

model_mod = pytest.importorskip("modise.model")

from data_fixtures import dciodvfy_errors, sample_pixels, train_tiny_run, write_mg_dicom  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("dicom-pred"), n=10, seed=2, k=5, fold=0)


@pytest.fixture(scope="module")
def study(tmp_path_factory, sample_images):
    """Two real mammograms of one study as valid MG DICOMs (one VOI LUT + MONOCHROME1, one with both
    spacings) and one JPEG (which gets no DICOM objects)."""
    import shutil

    from pydicom.uid import generate_uid

    folder = tmp_path_factory.mktemp("study")
    uid = generate_uid()
    write_mg_dicom(folder / "lcc.dcm", sample_pixels(sample_images[0], (128, 96)), voi="lut", monochrome1=True, study_uid=uid)
    write_mg_dicom(folder / "rmlo.dcm", sample_pixels(sample_images[1], (128, 96)), spacing="both", laterality="R",
                   view="MLO", study_uid=uid, instance_number=2)
    shutil.copy(sample_images[2], folder / "photo.jpg")
    return folder


def _uids(out):
    import pydicom

    found = {}
    for kind in ("seg", "sr"):
        for p in sorted((out / f"dicom_{kind}").iterdir()):
            ds = pydicom.dcmread(p)
            found[p.name] = (ds.SOPInstanceUID, ds.SeriesInstanceUID,
                             tuple(s.TrackingUID for s in ds.get("SegmentSequence", [])))
    return found


def test_predict_writes_valid_seg_and_sr_with_derived_uids(trained, study, tmp_path):
    import highdicom as hd
    import pydicom

    from modise.data.panoptic import read_id_png
    from modise.engine.prediction.predict import predict_files

    out = tmp_path / "out"
    summary = predict_files(trained / "run", [study], out, dicom_sr=True, progress=False, overlays=False, heatmaps=False)
    assert summary["images"] == 3 and summary["errors"] == []
    assert sorted(p.name for p in (out / "dicom_seg").iterdir()) == ["lcc_seg.dcm", "rmlo_seg.dcm"]
    assert sorted(p.name for p in (out / "dicom_sr").iterdir()) == ["lcc_sr.dcm", "rmlo_sr.dcm"]
    pj = json.loads((out / "panoptic.json").read_text())
    anns = {a["file_name"]: a for a in pj["annotations"]}
    n_instances = 0
    for name in ("lcc", "rmlo"):
        seg_path, sr_path = out / "dicom_seg" / f"{name}_seg.dcm", out / "dicom_sr" / f"{name}_sr.dcm"
        assert dciodvfy_errors(seg_path) == [] and dciodvfy_errors(sr_path) == []
        src = pydicom.dcmread(study / f"{name}.dcm")
        seg = hd.seg.segread(seg_path)
        planes = seg.get_pixels_by_source_instance([src.SOPInstanceUID], combine_segments=False)[0]
        ids = read_id_png(out / "panoptic" / f"{name}.png")
        segs = sorted(anns[f"{name}.png"]["segments_info"], key=lambda s: (-s["score"], s["id"]))
        assert planes.shape[-1] == len(segs) + len(pj["categories"])
        for k, s in enumerate(segs):  # the SEG's instance masks are the panoptic output, pixel for pixel
            assert np.array_equal(planes[..., k].astype(bool), ids == s["id"])
            assert seg.SegmentSequence[k].SegmentDescription.endswith(f"panoptic segment id {s['id']}")
        groups = hd.sr.srread(sr_path).content.get_planar_roi_measurement_groups()
        assert [g.referenced_segmentation_frame.referenced_segment_numbers for g in groups] == [[k + 1] for k in range(len(segs))]
        n_instances += len(segs)
    assert n_instances > 0  # thresholds 0: the untrained model keeps segments

    first = _uids(out)
    again = tmp_path / "again"  # a re-run (same model, settings, sources): the same objects, nothing new to store
    predict_files(trained / "run", [study], again, dicom_sr=True, progress=False, overlays=False, heatmaps=False)
    assert _uids(again) == first
    other = tmp_path / "other"  # other inference settings: new objects
    predict_files(trained / "run", [study], other, dicom_sr=True, progress=False, overlays=False, heatmaps=False,
                  object_mask_threshold=0.05)
    changed = _uids(other)
    assert changed.keys() == first.keys()
    assert all(changed[k][0] != first[k][0] and changed[k][1] != first[k][1] for k in first)
    assert dciodvfy_errors(other / "dicom_seg" / "lcc_seg.dcm") == []


def test_cli_dicom_writes_seg_and_sr_and_dicom_seg_only_the_seg(trained, study, tmp_path):
    from typer.testing import CliRunner

    from modise.cli import app

    for flag, folders in (("--dicom", ["dicom_seg", "dicom_sr"]), ("--dicom-seg", ["dicom_seg"])):
        out = tmp_path / flag.strip("-")
        r = CliRunner().invoke(app, ["predict", "--run", str(trained / "run"), "--input", str(study / "lcc.dcm"),
                                     "--out", str(out), flag, "--no-overlays"])
        assert r.exit_code == 0, r.output
        assert sorted(p.name for p in out.iterdir() if p.name.startswith("dicom")) == folders
