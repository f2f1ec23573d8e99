"""The DICOMweb client against a real Orthanc: which instances a query finds and which it skips, the
credentials taken from the environment only, and each fault told in one sentence naming the server."""

from __future__ import annotations

import base64
import http.server
import threading

import pytest

from dicomweb_fixtures import CT_IMAGE, MG_FOR_PROCESSING, mg_study, sibling
from modise.dicom import dicomweb as dw
from modise.errors import ModiseError, UsageError
from orthanc_server import USER, PASSWORD, FaultyProxy, free_port


@pytest.fixture(scope="module")
def study(orthanc, tmp_path_factory, sample_images):
    """Two MG images + a CT, an MG "FOR PROCESSING", a corrupt MG and a DX for presentation, stored in Orthanc."""
    folder = tmp_path_factory.mktemp("client_study")
    uid, files = mg_study(folder, sample_images[:2], patient="PCLIENT", study_date="20250610")
    extra = [sibling(files[0], folder / "ct.dcm", modality="CT", sop_class=CT_IMAGE),
             sibling(files[0], folder / "proc.dcm", sop_class=MG_FOR_PROCESSING, intent="FOR PROCESSING"),
             sibling(files[1], folder / "corrupt.dcm", truncate_pixels=True),
             sibling(files[1], folder / "dx.dcm", modality="DX", sop_class=dw.DX_FOR_PRESENTATION),
             sibling(files[1], folder / "intent.dcm", intent="FOR PROCESSING")]  # said only by the attribute
    for f in [*files, *extra]:
        assert orthanc.upload(f)["Status"] == "Success"
    return uid, files, extra


@pytest.fixture
def creds(monkeypatch, orthanc):
    monkeypatch.delenv(dw.TOKEN_ENV, raising=False)
    monkeypatch.setenv(dw.USER_ENV, USER)
    monkeypatch.setenv(dw.PASSWORD_ENV, PASSWORD)


def test_search_finds_mg_and_counts_the_rest(orthanc, study, creds):
    import pydicom

    uid, files, extra = study
    found, skipped = dw.server_for(orthanc.dicomweb).search({"StudyInstanceUID": uid})
    want = {str(pydicom.dcmread(f).SOPInstanceUID) for f in [*files, *extra[2:4]]}  # a corrupt MG is still an MG image
    assert {i.sop for i in found} == want
    assert dict(skipped) == {"modality CT": 1, "for processing": 2}  # Orthanc's QIDO-RS returns PresentationIntentType
    assert sorted(i.modality for i in found) == ["DX", "MG", "MG", "MG"] and all(i.study == uid for i in found)
    # study-level filters: patient and a date range; instance-level: a series-level key
    by_patient, _ = dw.server_for(orthanc.dicomweb).search({"PatientID": "PCLIENT", "StudyDate": "20250101-20251231"})
    assert {i.sop for i in by_patient} == want
    proxy = FaultyProxy(orthanc.port, ignore_offset=True)  # a server that ignores offset is not asked forever
    try:
        assert {i.sop for i in dw.server_for(proxy.dicomweb).search({"StudyInstanceUID": uid})[0]} == want
        assert len(proxy.requests) == 4  # studies, studies again (nothing new: stop), instances, instances again
    finally:
        proxy.close()
    ds = dw.server_for(orthanc.dicomweb).retrieve(found[0])
    assert ds.SOPInstanceUID == found[0].sop and ds.pixel_array.shape == (160, 128)
    # predict's reader: an image, a corrupt one, and one that says "FOR PROCESSING" only in its header
    from pathlib import Path

    from modise.engine.prediction.inputs import InputItem, SkippedInput, collect_remote, read_item

    items = {it.name: it for it in collect_remote(orthanc.dicomweb, {"StudyInstanceUID": uid})[0]}
    uids = {f.name: str(pydicom.dcmread(f).SOPInstanceUID) for f in [*files, *extra]}
    assert read_item(items[uids["mg0.dcm"]]).pixels.shape == (160, 128)
    # a server whose QIDO-RS leaves PresentationIntentType out: the retrieved header decides
    unsaid = InputItem(Path("x.dcm"), "x", None, dw.RemoteInstance(orthanc.dicomweb, uid, items[uids["mg0.dcm"]].remote.series,
                                                                       uids["intent.dcm"]))  # the MG series it was made in
    with pytest.raises(SkippedInput, match="for processing"):
        read_item(unsaid)
    with pytest.raises(ModiseError) as e:
        read_item(items[uids["corrupt.dcm"]])
    assert str(e.value).startswith(f"The DICOMweb server {orthanc.dicomweb} sent instance {uids['corrupt.dcm']} of study "
                                   f"{uid}, which is not a readable DICOM image (")


def test_missing_study_and_empty_query_are_one_sentence(orthanc, study, creds):
    server = dw.server_for(orthanc.dicomweb)
    with pytest.raises(ModiseError) as e:
        server.search({"StudyInstanceUID": "1.2.3.4.5"})
    assert str(e.value) == f"The DICOMweb server {orthanc.dicomweb} has no study 1.2.3.4.5."
    with pytest.raises(ModiseError) as e:
        server.search({"PatientID": "NOBODY", "StudyDate": "19000101-19001231"})
    assert str(e.value) == (f"No study on the DICOMweb server {orthanc.dicomweb} matches PatientID=NOBODY, "
                            f"StudyDate=19000101-19001231.")


def test_closed_port_and_wrong_credentials(orthanc, study, monkeypatch, creds):
    closed = f"http://127.0.0.1:{free_port()}/dicom-web"
    with pytest.raises(ModiseError) as e:
        dw.DicomwebServer(closed).search({"StudyInstanceUID": study[0]})
    assert str(e.value).startswith(f"Cannot reach the DICOMweb server {closed} for the studies matching StudyInstanceUID=")
    monkeypatch.setenv(dw.PASSWORD_ENV, "wrong-password")
    with pytest.raises(ModiseError) as e:
        dw.server_for(orthanc.dicomweb).search({"StudyInstanceUID": study[0]})
    msg = str(e.value)
    assert msg.startswith(f"The DICOMweb server {orthanc.dicomweb} refused access to the studies matching") and "HTTP 401" in msg
    assert dw.USER_ENV in msg and "wrong-password" not in msg and USER not in msg
    monkeypatch.delenv(dw.USER_ENV)
    monkeypatch.delenv(dw.PASSWORD_ENV)
    with pytest.raises(ModiseError, match="HTTP 401"):
        dw.server_for(orthanc.dicomweb).search({"StudyInstanceUID": study[0]})


def test_forbidden_and_not_a_dicomweb_root(orthanc, study, creds):
    proxy = FaultyProxy(orthanc.port, refuse_get=403)
    try:
        with pytest.raises(ModiseError) as e:
            dw.server_for(proxy.dicomweb).search({"PatientID": "PCLIENT"})
        assert str(e.value) == (f"The DICOMweb server {proxy.dicomweb} refused access to the studies matching PatientID=PCLIENT "
                                f"(HTTP 403 Refused): check the credentials in {dw.CREDENTIALS_HINT}.")
    finally:
        proxy.close()
    with pytest.raises(ModiseError) as e:
        dw.server_for(f"{orthanc.url}/not-dicomweb").search({"PatientID": "PCLIENT"})
    assert str(e.value).startswith(f"The server {orthanc.url}/not-dicomweb answered HTTP 404")
    assert str(e.value).endswith("is it the DICOMweb root (e.g. http://HOST:8042/dicom-web for Orthanc)?")


def test_dropped_connection_and_refused_stow_name_the_instance(orthanc, study, creds, tmp_path):
    uid, files, _ = study
    good = dw.server_for(orthanc.dicomweb).search({"StudyInstanceUID": uid})[0]
    proxy = FaultyProxy(orthanc.port, drop_after=0)
    try:
        inst = dw.RemoteInstance(proxy.dicomweb, good[0].study, good[0].series, good[0].sop)
        with pytest.raises(ModiseError) as e:
            dw.server_for(proxy.dicomweb).retrieve(inst)
        assert str(e.value) == (f"The DICOMweb server {proxy.dicomweb} closed the connection during instance "
                                f"{inst.sop} of study {uid}.")
    finally:
        proxy.close()
    proxy = FaultyProxy(orthanc.port, refuse_post=503)
    try:
        before = orthanc.instance_count()
        with pytest.raises(ModiseError) as e:
            dw.server_for(proxy.dicomweb).store([files[0]], "the test object")
        assert str(e.value) == f"The DICOMweb server {proxy.dicomweb} refused the STOW-RS of the test object (HTTP 503 Refused)."
        assert orthanc.instance_count() == before
    finally:
        proxy.close()


def test_urls_queries_and_skip_rules():
    assert dw.display_url("https://u:p@pacs.example.org:8443/dicom-web/?x=1") == "https://pacs.example.org:8443/dicom-web"
    with pytest.raises(UsageError) as e:
        dw.check_url("http://alice:hunter2@pacs/dicom-web")
    assert "hunter2" not in str(e.value) and "alice" not in str(e.value) and dw.USER_ENV in str(e.value)
    with pytest.raises(UsageError, match="not a DICOMweb URL"):
        dw.check_url("ftp://pacs/dicom-web")
    assert dw.parse_queries(["StudyInstanceUID=1.2.3", "00100020=P1", "StudyDate=20260101-20261231"]) == {
        "StudyInstanceUID": "1.2.3", "PatientID": "P1", "StudyDate": "20260101-20261231"}
    for bad in ["StudyInstanceUID", "NotAKeyword=1", "PatientID="]:
        with pytest.raises(UsageError):
            dw.parse_queries([bad])
    assert dw.skip_reason(dw.MG_FOR_PRESENTATION, "MG") is None
    assert dw.skip_reason(dw.DX_FOR_PRESENTATION, "DX") is None
    assert dw.skip_reason("1.2.840.10008.5.1.4.1.1.1", "DX", "FOR PRESENTATION") is None  # CR class, DX for presentation
    assert dw.skip_reason("1.2.840.10008.5.1.4.1.1.1", "DX", "") == "DX not for presentation"
    assert dw.skip_reason(dw.DX_FOR_PROCESSING, "DX") == "for processing"
    assert dw.skip_reason(dw.SEG_STORAGE, "SEG") == "DICOM SEG"
    assert dw.skip_reason("1.2.840.10008.5.1.4.1.1.88.22", "SR") == "structured report"
    assert dw.skip_reason(CT_IMAGE, "CT") == "modality CT"


def test_session_credentials_come_from_the_environment(monkeypatch, tmp_path):
    """A real local HTTP server records what the session sends: bearer token first, else basic auth; the
    bytes uncompressed."""
    seen: list[str | None] = []
    encodings: set[str | None] = set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            encodings.add(self.headers.get("Accept-Encoding"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    try:
        monkeypatch.setenv(dw.TOKEN_ENV, "tok-123")
        monkeypatch.setenv(dw.USER_ENV, "u")
        monkeypatch.setenv(dw.PASSWORD_ENV, "p")
        dw.make_session().get(url, timeout=5)
        monkeypatch.delenv(dw.TOKEN_ENV)
        dw.make_session().get(url, timeout=5)
        monkeypatch.delenv(dw.USER_ENV)
        monkeypatch.delenv(dw.PASSWORD_ENV)
        netrc = tmp_path / "netrc"
        netrc.write_text("machine 127.0.0.1 login n password netrc-pw\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))  # requests would read it: the environment's variables only count
        dw.make_session().get(url, timeout=5)
    finally:
        httpd.shutdown()
    assert seen == ["Bearer tok-123", "Basic " + base64.b64encode(b"u:p").decode(), None]
    assert encodings == {"identity"}  # no gzip of pixel data on the server (Orthanc: seconds per mammogram)
