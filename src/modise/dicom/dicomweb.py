"""A PACS over DICOMweb (``dicomweb-client``): QIDO-RS search, WADO-RS retrieve one instance at a time,
STOW-RS store.

Credentials come only from the environment (:data:`TOKEN_ENV` as a bearer token, or :data:`USER_ENV` /
:data:`PASSWORD_ENV` for basic authentication), never from a URL or the command line, and no message
shows them: a server is always named by :func:`display_url` (scheme, host, port, path; no userinfo, no
query). Every failure is a :class:`~modise.errors.ModiseError` of one sentence naming the server and the
study or instance (:func:`explain`).

Which instances modise predicts (:func:`skip_reason`): MG images, and DX images for presentation; SEG,
SR, other modalities and images "FOR PROCESSING" are skipped with a reason that the summary counts.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from modise.errors import ModiseError, UsageError

TOKEN_ENV = "MODISE_DICOMWEB_TOKEN"
USER_ENV = "MODISE_DICOMWEB_USER"
PASSWORD_ENV = "MODISE_DICOMWEB_PASSWORD"
CREDENTIALS_HINT = f"{TOKEN_ENV}, or {USER_ENV} and {PASSWORD_ENV}"

TIMEOUT_S = (10.0, 120.0)  # (connect, read): a dead server is named in seconds, a large instance still arrives

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."  # every structured report storage class (and key object selection)

# QIDO-RS attributes matched at the study level; every other --query key filters the study's instances
STUDY_KEYS = {
    "StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName", "ModalitiesInStudy",
}
INSTANCE_FIELDS = ["SOPClassUID", "Modality", "SeriesNumber", "InstanceNumber", "ImageLaterality", "ViewPosition",
                   "PresentationIntentType"]


def is_url(value: str | Path) -> bool:
    """Whether an ``--input`` is a DICOMweb server (``http://`` or ``https://``) rather than a file or folder."""
    return str(value).lower().startswith(("http://", "https://"))


def display_url(url: str) -> str:
    """``url`` without userinfo, query or fragment: how a server is named in messages and outputs."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def check_url(url: str, option: str = "--input") -> str:
    """``url`` as a DICOMweb root (no trailing slash); a usage error (exit 2) for anything else, and for a
    URL that carries credentials (they belong in the environment, not on the command line)."""
    parts = urlsplit(str(url))
    shown = display_url(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(option, f"'{shown}' is not a DICOMweb URL (http://HOST[:PORT]/PATH).")
    if parts.username is not None or parts.password is not None:
        raise UsageError(option, f"the URL {shown} carries credentials; give them in the environment instead "
                                 f"({CREDENTIALS_HINT}), never on the command line.")
    if parts.query or parts.fragment:
        raise UsageError(option, f"the URL {shown} has a query or fragment; give filters as --query KEY=VALUE.")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def parse_queries(queries: Sequence[str] | None) -> dict[str, str]:
    """``--query KEY=VALUE`` (repeatable) as QIDO-RS search filters; KEY is a DICOM keyword or an 8-digit
    hex tag, VALUE as QIDO-RS takes it (``StudyDate=20260101-20261231`` a range, ``PatientName=DOE*``)."""
    from pydicom.datadict import keyword_for_tag, tag_for_keyword

    filters: dict[str, str] = {}
    for q in queries or []:
        key, sep, value = str(q).partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise UsageError("--query", f"'{q}' is not KEY=VALUE (e.g. StudyInstanceUID=1.2.3 or StudyDate=20260101-20261231).")
        if tag_for_keyword(key) is None:
            try:
                key = keyword_for_tag(int(key, 16)) or key
            except ValueError:
                raise UsageError("--query", f"'{key}' is not a DICOM keyword (e.g. StudyInstanceUID, PatientID, "
                                            f"StudyDate, AccessionNumber).") from None
        if key in filters and filters[key] != value:
            raise UsageError("--query", f"{key} is given twice ('{filters[key]}' and '{value}').")
        filters[key] = value
    return filters


def make_session() -> Any:
    """A ``requests.Session`` that authenticates from the environment only (bearer token, else basic; never
    ``~/.netrc``), keeps the environment's proxies and CA bundle, and retries only what cannot have
    half-happened."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    token = os.environ.get(TOKEN_ENV, "").strip()
    user, password = os.environ.get(USER_ENV, ""), os.environ.get(PASSWORD_ENV, "")
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    if (user or password) and not token:
        session.auth = (user, password)
    else:  # a no-op auth: requests would otherwise take ~/.netrc's credentials (only the environment's count)
        session.auth = _no_auth
    # pixel data barely compresses, and a server that gzips it on the fly (Orthanc does by default) spends
    # seconds per mammogram doing so: ask for the bytes as they are
    session.headers["Accept-Encoding"] = "identity"
    # a refused connect is retried twice, a busy server's 429/503/504 to a GET twice (after Retry-After);
    # a dropped read and every POST are not: they are named per instance instead
    retry = Retry(total=4, connect=2, read=0, status=2, other=0, status_forcelist=(429, 503, 504),
                  allowed_methods=frozenset({"GET"}), backoff_factor=0.25, raise_on_status=False)
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@dataclass(frozen=True)
class RemoteInstance:
    """One instance on a DICOMweb server, as QIDO-RS described it (picklable: no connection inside)."""

    server: str  # the DICOMweb root, checked (no credentials)
    study: str
    series: str
    sop: str
    sop_class: str = ""
    modality: str = ""
    series_number: int | None = None
    instance_number: int | None = None
    presentation_intent: str = ""
    laterality: str = ""
    view: str = ""

    def describe(self) -> str:
        return f"instance {self.sop} of study {self.study}"

    @property
    def url(self) -> str:
        """The WADO-RS URL of the instance (no credentials)."""
        return f"{display_url(self.server)}/studies/{self.study}/series/{self.series}/instances/{self.sop}"


def skip_reason(sop_class: str, modality: str, presentation_intent: str = "") -> str | None:
    """Why an instance is not predicted (``None``: it is an MG image, or a DX image for presentation)."""
    intent = (presentation_intent or "").strip().upper()
    if sop_class == SEG_STORAGE or modality == "SEG":
        return "DICOM SEG"
    if sop_class.startswith(SR_PREFIX) or modality in ("SR", "KO"):
        return "structured report"
    if sop_class in (MG_FOR_PROCESSING, DX_FOR_PROCESSING) or intent == "FOR PROCESSING":
        return "for processing"
    if modality == "MG" or sop_class == MG_FOR_PRESENTATION:
        return None
    if modality == "DX" or sop_class == DX_FOR_PRESENTATION:
        return None if sop_class == DX_FOR_PRESENTATION or intent == "FOR PRESENTATION" else "DX not for presentation"
    return f"modality {modality or 'unknown'}"


class DicomwebServer:
    """One DICOMweb server: a :class:`dicomweb_client.DICOMwebClient` on a session from :func:`make_session`."""

    def __init__(self, url: str) -> None:
        from dicomweb_client import DICOMwebClient

        self.url = check_url(url)
        self.name = display_url(self.url)
        self.client = DICOMwebClient(self.url, session=make_session(), timeout=TIMEOUT_S)
        # the session retries (above); dicomweb-client's own retrying would also retry any exception and
        # log each try's traceback on stderr
        self.client.set_http_retry_params(retry=False)

    # ---- QIDO-RS -------------------------------------------------------------------------------------
    def search(self, filters: Mapping[str, str]) -> tuple[list[RemoteInstance], Counter]:
        """The instances of every study matching ``filters`` (study keys at the study level, the rest per
        instance), sorted by study, series number, instance number; and the skipped ones counted by reason."""
        study_filters = {k: v for k, v in filters.items() if k in STUDY_KEYS}
        instance_filters = {k: v for k, v in filters.items() if k not in STUDY_KEYS}
        query = ", ".join(f"{k}={v}" for k, v in filters.items()) or "everything"
        studies = self._pages(lambda offset: self.client.search_for_studies(
            search_filters=study_filters, fields=["StudyInstanceUID"], offset=offset), "0020000D", f"the studies matching {query}")
        uids = sorted({_value(s, "0020000D") for s in studies} - {""})
        if not uids:
            if "StudyInstanceUID" in filters and len(filters) == 1:
                raise ModiseError(f"The DICOMweb server {self.name} has no study {filters['StudyInstanceUID']}.")
            raise ModiseError(f"No study on the DICOMweb server {self.name} matches {query}.")
        found: list[RemoteInstance] = []
        for study in uids:
            rows = self._pages(lambda offset, s=study: self.client.search_for_instances(
                study_instance_uid=s, search_filters=instance_filters, fields=INSTANCE_FIELDS, offset=offset),
                "00080018", f"the instances of study {study}")
            found += [self._instance(study, r) for r in rows]
        if not found:
            raise ModiseError(f"No instance on the DICOMweb server {self.name} matches {query}.")
        found.sort(key=lambda i: (i.study, i.series_number or 0, i.series, i.instance_number or 0, i.sop))
        skipped: Counter = Counter()
        keep = []
        for inst in found:
            reason = skip_reason(inst.sop_class, inst.modality, inst.presentation_intent)
            if reason:
                skipped[reason] += 1
            else:
                keep.append(inst)
        return keep, skipped

    def _pages(self, page: Any, key: str, what: str) -> list[dict]:
        """Every QIDO-RS result, page after page (``page(offset)``) until one is empty or brings nothing new
        (a server that ignores ``offset`` would otherwise be asked forever)."""
        rows: list[dict] = []
        seen: set[str] = set()
        while True:
            batch = self._call(lambda: page(len(rows)), what)
            new = [r for r in batch if _value(r, key) not in seen]
            if not new:
                return rows
            seen.update(_value(r, key) for r in new)
            rows += new

    def _instance(self, study: str, row: dict) -> RemoteInstance:
        return RemoteInstance(
            self.url, _value(row, "0020000D") or study, _value(row, "0020000E"), _value(row, "00080018"),
            _value(row, "00080016"), _value(row, "00080060").upper(), _int(_value(row, "00200011")),
            _int(_value(row, "00200013")), _value(row, "00080068"), _value(row, "00200062"), _value(row, "00185101"))

    # ---- WADO-RS -------------------------------------------------------------------------------------
    def retrieve(self, inst: RemoteInstance) -> Any:
        """The instance as a pydicom Dataset (its bytes in memory once, no more: one instance at a time)."""
        ds = self._call(lambda: self.client.retrieve_instance(inst.study, inst.series, inst.sop), inst.describe())
        if ds is None:
            raise ModiseError(f"The DICOMweb server {self.name} sent nothing for {inst.describe()}.")
        return ds

    # ---- STOW-RS -------------------------------------------------------------------------------------
    def store(self, files: Iterable[Path], what: str) -> list[str]:
        """Store the DICOM ``files`` in one STOW-RS request; the SOP Instance UIDs the server accepted
        (an instance it already holds counts as accepted: it keeps its copy). ``what`` names them in errors."""
        import pydicom

        datasets = [pydicom.dcmread(f) for f in files]
        if not datasets:
            return []
        answer = self._call(lambda: self.client.store_instances(datasets), f"the STOW-RS of {what}", store=True)
        failed = [str(getattr(item, "ReferencedSOPInstanceUID", "?")) for item in getattr(answer, "FailedSOPSequence", [])]
        if failed:
            raise ModiseError(f"The DICOMweb server {self.name} refused to store {what} (failed: {', '.join(failed)}).")
        return [str(d.SOPInstanceUID) for d in datasets]

    def _call(self, fn: Any, what: str, store: bool = False) -> Any:
        try:
            return fn()
        except ModiseError:
            raise
        except Exception as e:  # noqa: BLE001  requests, urllib3, pydicom: each told in one sentence
            raise explain(e, self.name, what, store=store) from None


def explain(exc: BaseException, server: str, what: str, store: bool = False) -> ModiseError:
    """One sentence for a failed request about ``what`` to ``server`` (shown without credentials).

    Built from the status code and the kind of failure only, never from the exception's text (which may
    carry a URL or a header)."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code, reason = exc.response.status_code, (exc.response.reason or "").strip()
        status = f"HTTP {code}{' ' + reason if reason else ''}"
        if code in (401, 403):
            return ModiseError(f"The DICOMweb server {server} refused access to {what} ({status}): check the "
                               f"credentials in {CREDENTIALS_HINT}.")
        if store:
            return ModiseError(f"The DICOMweb server {server} refused {what} ({status}).")
        if code == 404 and what.startswith("the studies"):  # QIDO-RS answers an empty list, not 404, for no match
            return ModiseError(f"The server {server} answered {status} to a QIDO-RS search for {what}: is it the "
                               f"DICOMweb root (e.g. http://HOST:8042/dicom-web for Orthanc)?")
        if code == 404:
            return ModiseError(f"The DICOMweb server {server} has no {what.removeprefix('the ')} ({status}).")
        return ModiseError(f"The DICOMweb server {server} answered {status} to the request for {what}.")
    if isinstance(exc, requests.Timeout):
        return ModiseError(f"The DICOMweb server {server} did not answer in time for {what}.")
    if isinstance(exc, requests.ConnectionError):
        if _dropped(exc):
            return ModiseError(f"The DICOMweb server {server} closed the connection during {what}.")
        return ModiseError(f"Cannot reach the DICOMweb server {server} for {what} (connection refused or no route).")
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return ModiseError(f"The DICOMweb server {server} closed the connection during {what}.")
    if isinstance(exc, requests.RequestException):
        return ModiseError(f"The request to the DICOMweb server {server} for {what} failed ({type(exc).__name__}).")
    return ModiseError(f"The DICOMweb server {server} sent an unreadable answer for {what} ({type(exc).__name__}).")


def _dropped(exc: BaseException) -> bool:
    """Whether a connection error is a connection that opened and then closed (not a refused connect)."""
    import http.client

    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.IncompleteRead)):
            return True
        if type(e).__name__ in ("ProtocolError",) and "aborted" in str(e.args[:1]).lower():
            return True
        stack += [e.__cause__, e.__context__, getattr(e, "reason", None), *[a for a in e.args if isinstance(a, BaseException)]]
    return False


def server_for(url: str) -> DicomwebServer:
    """One :class:`DicomwebServer` per URL, credentials and process (a worker process makes its own from
    the environment; changed credentials make a new session)."""
    return _cached_server(url, *(os.environ.get(k, "") for k in (TOKEN_ENV, USER_ENV, PASSWORD_ENV)))


@lru_cache(maxsize=4)
def _cached_server(url: str, *credentials: str) -> DicomwebServer:  # credentials: only the cache's key
    return DicomwebServer(url)


def _no_auth(request: Any) -> Any:
    return request


def _value(row: Mapping[str, Any], tag: str) -> str:
    """The first value of ``tag`` in a DICOM JSON row, as text ('' when absent)."""
    vals = (row.get(tag) or {}).get("Value") or []
    if not vals:
        return ""
    v = vals[0]
    if isinstance(v, dict):  # a person name
        return str(v.get("Alphabetic", ""))
    return str(v)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None
