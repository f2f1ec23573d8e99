"""``modise serve --dicomweb-url``: the Segment tab opens a study's image from a real Orthanc and segments
it as an uploaded DICOM (SEG and SR among the downloads)."""

from __future__ import annotations

import os

import pytest

from dicomweb_fixtures import CT_IMAGE, mg_study, sibling
from modise.app.state import RANDOM_RUN, AppSettings, AppState
from modise.dicom import dicomweb as dw
from modise.errors import ModiseError
from orthanc_server import PASSWORD, USER


@pytest.fixture
def state(orthanc, tmp_path, monkeypatch):
    monkeypatch.delenv(dw.TOKEN_ENV, raising=False)
    monkeypatch.setenv(dw.USER_ENV, USER)
    monkeypatch.setenv(dw.PASSWORD_ENV, PASSWORD)
    s = AppState(AppSettings(random_weights=True, size="tiny", dicomweb_url=orthanc.dicomweb), tmp_root=tmp_path)
    yield s
    s.cleanup()


def test_open_a_study_image_and_segment_it(state, orthanc, tmp_path, sample_images):
    import pydicom

    from modise.app.pacs import open_image, study_images
    from modise.app.segment_tab import segment_file

    uid, files = mg_study(tmp_path / "study", sample_images[5:7], patient="PAPP")
    for f in [*files, sibling(files[0], tmp_path / "ct.dcm", modality="CT", sop_class=CT_IMAGE)]:
        orthanc.upload(f)
    choices = study_images(state, f"  {uid} ")
    sops = [str(pydicom.dcmread(f).SOPInstanceUID) for f in files]
    assert [value.split("/")[1] for _, value in choices] == sops  # the CT is not offered
    assert choices[0][0] == f"L CC #1 {sops[0]}"
    path = open_image(state, uid, choices[1][1])
    assert path.name == f"{sops[1]}.dcm" and pydicom.dcmread(path).SOPInstanceUID == sops[1]
    res = segment_file(state, str(path), RANDOM_RUN, 0.0, 0.0)
    assert any(f.endswith("_seg.dcm") for f in res.files) and any(f.endswith("_sr.dcm") for f in res.files)
    with pytest.raises(ModiseError, match=f"The DICOMweb server {orthanc.dicomweb} has no study 1.2.3.4."):
        study_images(state, "1.2.3.4")
    with pytest.raises(ModiseError, match="Enter a Study Instance UID"):
        study_images(state, " ")


def test_the_study_field_shows_only_with_a_server(state, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from modise.app.server import build_app
    from modise.cli import app

    for var in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED"):
        monkeypatch.setenv(var, os.environ.get(var, ""))  # build_app sets them; restored afterwards
    ids = {getattr(b, "elem_id", None) for b in build_app(state).blocks.values()}
    assert {"segment-study-uid", "segment-study-open", "segment-study-image"} <= ids
    plain = AppState(AppSettings(random_weights=True, size="tiny"), tmp_root=tmp_path)
    try:
        assert "segment-study-uid" not in {getattr(b, "elem_id", None) for b in build_app(plain).blocks.values()}
    finally:
        plain.cleanup()
    res = CliRunner().invoke(app, ["serve", "--random-weights", "--dicomweb-url", "http://u:pw9@pacs/dicom-web"])
    assert res.exit_code == 2 and "carries credentials" in res.output and "pw9" not in res.output
