"""``modise predict --input http://HOST/dicom-web --query ... --store`` against a real Orthanc and a tiny
trained run: the round trip (upload, predict, STOW-RS, WADO-RS back, highdicom reads, masks equal the
local panoptic output), a re-run that stores nothing new, ``--resume`` with ``--workers``, and the
faults (closed port, wrong credentials, missing study, empty query, a server dropping mid-study, STOW-RS
refused), none of which may leak a credential."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dicomweb_fixtures import CT_IMAGE, mg_study, sibling
from modise.cli import app
from modise.dicom import dicomweb as dw
from orthanc_server import PASSWORD, USER, FaultyProxy, free_port

model_mod = pytest.importorskip("modise.model")
from data_fixtures import train_tiny_run  # noqa: E402

runner = CliRunner()
SECRETS = (PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(), "tok-Never-Shown-42")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("dicomweb_run"), n=8, seed=3, k=4, fold=0)


@pytest.fixture(scope="module")
def study(orthanc, tmp_path_factory, sample_images):
    """Three MG images from the real samples, a CT image and a corrupt MG, stored in Orthanc."""
    import pydicom

    folder = tmp_path_factory.mktemp("pacs_study")
    uid, files = mg_study(folder, sample_images[2:5], patient="PPRED")
    ct = sibling(files[0], folder / "ct.dcm", modality="CT", sop_class=CT_IMAGE)
    corrupt = sibling(files[1], folder / "corrupt.dcm", truncate_pixels=True)
    for f in [*files, ct, corrupt]:
        assert orthanc.upload(f)["Status"] == "Success"
    return {"uid": uid, "files": files, "mg": [str(pydicom.dcmread(f).SOPInstanceUID) for f in files],
            "corrupt": str(pydicom.dcmread(corrupt).SOPInstanceUID)}


@pytest.fixture
def creds(monkeypatch):
    monkeypatch.delenv(dw.TOKEN_ENV, raising=False)
    monkeypatch.setenv(dw.USER_ENV, USER)
    monkeypatch.setenv(dw.PASSWORD_ENV, PASSWORD)


def predict(run: Path, url: str, study_uid: str, out: Path, *extra: str):
    res = runner.invoke(app, ["predict", "--run", str(run / "run"), "--input", url, "--query", f"StudyInstanceUID={study_uid}",
                              "--out", str(out), "--device", "cpu", "--no-overlays", *extra])
    assert_no_secret(res.stdout + res.stderr + error(res), out)
    return res


def error(res) -> str:
    """The one sentence ``modise`` prints for a ModiseError (``modise.cli.main`` prints it; CliRunner keeps it)."""
    from modise.errors import ModiseError

    return str(res.exception) if isinstance(res.exception, ModiseError) else ""


def assert_no_secret(text: str, out: Path | None = None) -> None:
    """No credential in ``text`` nor in any file under ``out``."""
    blobs = [text.encode()]
    if out is not None and out.exists():
        blobs += [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    for secret in SECRETS:
        assert not any(secret.encode() in b for b in blobs), f"credential {secret[:3]}... leaked"


def server_objects(orthanc, study_uid: str, modality: str) -> list:
    """The study's instances of ``modality`` on the server, retrieved by WADO-RS."""
    server = dw.DicomwebServer(orthanc.dicomweb)
    rows = server.client.search_for_instances(study_uid, search_filters={"Modality": modality})
    return [server.client.retrieve_instance(study_uid, r["0020000E"]["Value"][0], r["00080018"]["Value"][0]) for r in rows]


@pytest.fixture(scope="module")
def round_trip(trained, study, orthanc, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(dw.TOKEN_ENV, raising=False)
        mp.setenv(dw.USER_ENV, USER)
        mp.setenv(dw.PASSWORD_ENV, PASSWORD)
        before = orthanc.instance_count()
        out = tmp_path_factory.mktemp("rt") / "preds"
        res = predict(trained, orthanc.dicomweb, study["uid"], out, "--store")
        return {"res": res, "out": out, "before": before, "after": orthanc.instance_count()}


def test_round_trip_seg_back_from_the_server_equals_local_output(round_trip, study, orthanc, creds, tmp_path):
    import highdicom as hd
    import pydicom

    from data_fixtures import dciodvfy_errors
    from modise.data.panoptic import read_id_png

    res, out = round_trip["res"], round_trip["out"]
    assert res.exit_code == 3, res.output  # the corrupt instance failed; the rest is written
    summary = json.loads((out / "summary.json").read_text())
    assert summary["server"] == orthanc.dicomweb
    assert (summary["done"], summary["failed"], summary["skipped_instances"]) == (3, 1, {"modality CT": 1})
    (err,) = summary["errors"]
    assert err["input"] == study["corrupt"] and err["error"].startswith(
        f"The DICOMweb server {orthanc.dicomweb} sent instance {study['corrupt']} of study {study['uid']}, which is "
        f"not a readable DICOM image (")
    assert f"{orthanc.dicomweb}: 3 instances predicted, 1 skipped (1 modality CT), 1 failed; 6 DICOM objects stored." in res.stdout
    pj = json.loads((out / "panoptic.json").read_text())
    assert [im["file_name"] for im in pj["images"]] == [f"{uid}.dcm" for uid in study["mg"]]
    assert pj["images"][0]["source"].startswith(f"{orthanc.dicomweb}/studies/{study['uid']}/series/")
    assert (out / "instances.json").is_file() and len(list((out / "heatmaps").iterdir())) == 3 * len(pj["categories"])

    # what the server now holds: one SEG and one SR per MG image, and nothing else new
    segs, srs = server_objects(orthanc, study["uid"], "SEG"), server_objects(orthanc, study["uid"], "SR")
    assert len(segs) == len(srs) == 3 and summary["stored"] == 6 == round_trip["after"] - round_trip["before"]
    n_cats = len(pj["categories"])
    for ds in segs:
        seg = hd.seg.Segmentation.from_dataset(ds)
        src = ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
        ann = pj["annotations"][study["mg"].index(src)]
        ids = read_id_png(out / "panoptic" / ann["file_name"])
        planes = seg.get_pixels_by_source_instance([src], combine_segments=False)[0]
        order = sorted(ann["segments_info"], key=lambda s: (-s["score"], s["id"]))  # instances by score, then classes
        assert planes.shape == (*ids.shape, len(order) + n_cats) and len(order) > 0
        for k, s in enumerate(order):  # each instance segment is its panoptic segment, pixel for pixel
            assert np.array_equal(planes[..., k].astype(bool), ids == s["id"]), (src, s)
        for j, cat in enumerate(pj["categories"]):
            members = [s["id"] for s in order if s["category_id"] == cat["id"]]
            assert np.array_equal(planes[..., len(order) + j].astype(bool), np.isin(ids, members))
        assert pydicom.dcmread(out / "dicom_seg" / f"{src}_seg.dcm").SOPInstanceUID == ds.SOPInstanceUID
        ds.save_as(tmp_path / "seg.dcm", enforce_file_format=True)
        assert dciodvfy_errors(tmp_path / "seg.dcm") == []
    seg_uids = {ds.SOPInstanceUID for ds in segs}
    for ds in srs:
        ds.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
        sr = hd.sr.srread(tmp_path / "sr.dcm")
        evidence = {r.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                    for se in s.ReferencedSeriesSequence for r in se.ReferencedSOPSequence}
        assert len(evidence & seg_uids) == 1 and len(evidence & set(study["mg"])) == 1
        assert dciodvfy_errors(tmp_path / "sr.dcm") == []


def test_rerun_needs_overwrite_and_stores_nothing_new(round_trip, trained, study, orthanc, creds):
    out = round_trip["out"]
    count = orthanc.instance_count()
    res = predict(trained, orthanc.dicomweb, study["uid"], out, "--store")
    assert res.exit_code == 1 and "pass --overwrite" in error(res), res.output
    res = predict(trained, orthanc.dicomweb, study["uid"], out, "--store", "--overwrite")
    assert res.exit_code == 3, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stored"] == 6  # sent again ...
    assert orthanc.instance_count() == count  # ... and the server already had every one (same UIDs)


def test_resume_with_workers_sends_what_was_not_sent(round_trip, trained, study, orthanc, creds):
    out = round_trip["out"]
    name = study["mg"][1]
    (out / "records" / f"{name}.json").unlink()  # as if killed before this image's record
    (out / "stored" / f"{name}.json").unlink()
    count = orthanc.instance_count()
    res = predict(trained, orthanc.dicomweb, study["uid"], out, "--store", "--resume", "--workers", "2")
    assert res.exit_code == 3, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["skipped"], summary["done"], summary["images"]) == (2, 1, 3)
    assert summary["stored"] == 2 and json.loads((out / "stored" / f"{name}.json").read_text())["files"] == [
        f"dicom_seg/{name}_seg.dcm", f"dicom_sr/{name}_sr.dcm"]
    assert orthanc.instance_count() == count


def test_no_store_without_store_and_the_server_dropping_mid_study(trained, study, orthanc, creds, tmp_path):
    count = orthanc.instance_count()
    # the QIDO-RS searches and the first WADO-RS retrieve pass; every later retrieve's connection is closed unanswered
    proxy = FaultyProxy(orthanc.port, drop_after=1, drop_paths="/instances/")
    try:
        res = predict(trained, proxy.dicomweb, study["uid"], tmp_path / "out")
    finally:
        proxy.close()
    assert res.exit_code == 3, res.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == 1 and summary["failed"] == 3 and "stored" not in summary
    dropped = [e["error"] for e in summary["errors"]]
    assert all(e.startswith(f"The DICOMweb server {proxy.dicomweb} closed the connection during instance ") for e in dropped)
    assert all(f"of study {study['uid']}." in e for e in dropped)
    named = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]  # (progress lines too)
    assert named == [f"error: {e}" for e in dropped]  # each instance named once, one line each
    assert len(list((tmp_path / "out" / "panoptic").iterdir())) == 1 and len(list((tmp_path / "out" / "dicom_seg").iterdir())) == 1
    assert orthanc.instance_count() == count  # nothing stored without --store


def test_stow_refused_keeps_local_results(trained, study, orthanc, creds, tmp_path):
    count = orthanc.instance_count()
    proxy = FaultyProxy(orthanc.port, refuse_post=500)
    try:
        res = predict(trained, orthanc.dicomweb, study["uid"], tmp_path / "out", "--store", "--store-url", proxy.dicomweb)
    finally:
        proxy.close()
    assert res.exit_code == 3, res.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == 3 and summary["stored"] == 0
    refused = [e for e in summary["errors"] if e["input"] in study["mg"]]
    assert len(refused) == 3
    for e in refused:
        assert e["error"].startswith(f"The DICOMweb server {proxy.dicomweb} refused the STOW-RS of the DICOM SEG and SR of")
        assert f"instance {e['input']} of study {study['uid']} (HTTP 500 Refused)." in e["error"]
    assert not (tmp_path / "out" / "stored").exists() or not any((tmp_path / "out" / "stored").iterdir())
    assert orthanc.instance_count() == count


def test_store_a_folders_dicom_to_another_server(trained, orthanc, creds, tmp_path, sample_images):
    """Files in, SEG and SR out to a server (``--store --store-url``): the DICOM ones only."""
    import shutil

    _, files = mg_study(tmp_path / "in", sample_images[7:8], patient="PFOLDER")
    shutil.copy(sample_images[8], tmp_path / "in" / "photo.jpg")
    count = orthanc.instance_count()
    res = runner.invoke(app, ["predict", "--run", str(trained / "run"), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                              "--device", "cpu", "--no-overlays", "--store", "--store-url", orthanc.dicomweb])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == 2 and summary["stored"] == 2 and orthanc.instance_count() == count + 2
    assert sorted(p.name for p in (tmp_path / "out" / "dicom_sr").iterdir()) == ["mg0_sr.dcm"]
    assert_no_secret(res.stdout + res.stderr, tmp_path / "out")


@pytest.mark.parametrize("case", ["closed port", "wrong password", "token", "missing study", "matches nothing", "no MG"])
def test_server_faults_are_one_sentence_and_write_nothing(case, trained, study, orthanc, monkeypatch, tmp_path, sample_images):
    monkeypatch.setenv(dw.USER_ENV, USER)
    monkeypatch.setenv(dw.PASSWORD_ENV, PASSWORD)
    monkeypatch.delenv(dw.TOKEN_ENV, raising=False)
    url, query = orthanc.dicomweb, f"StudyInstanceUID={study['uid']}"
    if case == "closed port":
        url = f"http://127.0.0.1:{free_port()}/dicom-web"
        want = f"Cannot reach the DICOMweb server {url} for the studies matching {query}"
    elif case == "wrong password":
        monkeypatch.setenv(dw.PASSWORD_ENV, "x" + PASSWORD)
        want = f"The DICOMweb server {url} refused access to the studies matching {query} (HTTP 401"
    elif case == "token":
        monkeypatch.setenv(dw.TOKEN_ENV, SECRETS[2])  # Orthanc knows no bearer tokens: 401
        want = f"The DICOMweb server {url} refused access to the studies matching {query} (HTTP 401"
    elif case == "no MG":  # a study that holds only a CT image
        ct_uid, files = mg_study(tmp_path / "ct", sample_images[:1], patient="PCT")
        orthanc.upload(sibling(files[0], tmp_path / "ct" / "ct.dcm", modality="CT", sop_class=CT_IMAGE))
        query = f"StudyInstanceUID={ct_uid}"
        want = f"The DICOMweb server {url} holds no MG image (nor DX for presentation) for {query} (skipped: 1 modality CT)."
    elif case == "missing study":
        query = "StudyInstanceUID=1.2.826.0.1.3680043.8.498.1"
        want = f"The DICOMweb server {url} has no study 1.2.826.0.1.3680043.8.498.1."
    else:
        query = "PatientID=PPRED"
        res = runner.invoke(app, ["predict", "--run", str(trained / "run"), "--input", url, "--query", query,
                                  "--query", "StudyDate=19990101-19991231", "--out", str(tmp_path / "out")])
        want = f"No study on the DICOMweb server {url} matches PatientID=PPRED, StudyDate=19990101-19991231."
    if case != "matches nothing":
        res = runner.invoke(app, ["predict", "--run", str(trained / "run"), "--input", url, "--query", query,
                                  "--out", str(tmp_path / "out")])
    assert res.exit_code == 1, res.output
    assert want in error(res) and "\n" not in error(res), error(res)
    assert not (tmp_path / "out").exists()
    assert_no_secret(res.stdout + res.stderr + error(res))


def test_the_command_prints_one_line_and_exits_1(trained, tmp_path):
    """As a user runs it (``modise.cli.main``): a server that cannot be reached is one line on stderr."""
    import os
    import subprocess
    import sys

    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    env = {**os.environ, dw.USER_ENV: USER, dw.PASSWORD_ENV: PASSWORD}
    r = subprocess.run([sys.executable, "-m", "modise", "predict", "--run", str(trained / "run"), "--input", url,
                        "--query", "StudyInstanceUID=1.2.3", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [f"error: Cannot reach the DICOMweb server {url} for the studies matching "
                                             f"StudyInstanceUID=1.2.3 (connection refused or no route)."]
    assert_no_secret(r.stdout + r.stderr)
    assert not (tmp_path / "out").exists()


def test_usage_errors_before_anything_is_read(trained, tmp_path):
    run = str(trained / "run")
    cases = [
        (["--input", "http://alice:pw1@pacs/dicom-web", "--query", "PatientID=1"], "carries credentials"),
        (["--input", "http://pacs/dicom-web"], "needs --query"),
        (["--input", str(tmp_path), "--query", "PatientID=1"], "filters a DICOMweb server"),
        (["--input", "http://pacs/dicom-web", "--input", str(tmp_path), "--query", "PatientID=1"], "the only --input"),
        (["--input", "http://pacs/dicom-web", "--query", "PatientID=1", "--store-url", "http://other/dicom-web"], "needs --store"),
        (["--input", str(tmp_path), "--store"], "--store-url"),
        (["--input", "http://pacs/dicom-web", "--query", "Nope=1"], "not a DICOM keyword"),
    ]
    for args, want in cases:
        res = runner.invoke(app, ["predict", "--run", run, *args, "--out", str(tmp_path / "o")])
        assert res.exit_code == 2 and want in res.output, (args, res.output)
        assert "pw1" not in res.output
    assert not (tmp_path / "o").exists()
