"""A real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) for the DICOMweb tests, and two small
localhost proxies in front of it that misbehave on purpose (drop the connection, refuse STOW-RS).

:func:`start_orthanc` writes a temporary JSON configuration (HTTP on a free port of 127.0.0.1, the DICOM
server off, storage and index in a temporary folder, only the DICOMweb plugin, basic authentication
with one registered user), starts ``/usr/sbin/Orthanc`` on it, waits until it answers and returns an
:class:`Orthanc`; :meth:`Orthanc.stop` ends that process (by its id) and the tests' fixture calls it.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "modise-test", "s3cret-Pa55word-never-printed"


def orthanc_available() -> str | None:
    """Why a real Orthanc cannot run here (``None`` when it can)."""
    if not Path(ORTHANC).is_file():
        return f"{ORTHANC} missing (Debian package orthanc)"
    if not Path(DICOMWEB_PLUGIN).is_file():
        return f"{DICOMWEB_PLUGIN} missing (Debian package orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    """A running Orthanc: its process, REST root (``url``) and DICOMweb root (``dicomweb``)."""

    process: subprocess.Popen
    port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return USER, PASSWORD

    def rest(self, path: str) -> object:
        r = requests.get(f"{self.url}{path}", auth=self.auth, timeout=10)
        r.raise_for_status()
        return r.json()

    def upload(self, path: Path) -> dict:
        """POST one DICOM file to Orthanc's REST API (``/instances``); its answer (ID, Status)."""
        r = requests.post(f"{self.url}/instances", data=Path(path).read_bytes(), auth=self.auth, timeout=30)
        r.raise_for_status()
        return r.json()

    def instance_count(self) -> int:
        return int(self.rest("/statistics")["CountInstances"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_orthanc(folder: Path, timeout_s: float = 30.0) -> Orthanc:
    """Start Orthanc with its configuration, storage and log in ``folder``; wait until its REST API answers."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "modise-test",
        "HttpPort": port,
        "RemoteAccessAllowed": False,  # 127.0.0.1 only
        "DicomServerEnabled": False,
        "DicomPort": free_port(),  # unused (server off), but never the default 4242 another Orthanc may hold
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "OverwriteInstances": False,  # a re-sent instance is ignored: what "nothing new stored" relies on
        "HttpServerThreads": 8,
        "HttpTimeout": 30,
        "StorageCompression": False,
    }
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=2))
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115  kept open for the process's life
    proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=folder,
                            preexec_fn=_die_with_parent)
    server = Orthanc(proc, port, folder)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {proc.returncode}: {(folder / 'orthanc.log').read_text()[-2000:]}")
        try:
            server.rest("/system")
            return server
        except requests.RequestException:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"Orthanc did not answer on port {port} within {timeout_s:g} s")


def _die_with_parent() -> None:
    """In the child: SIGTERM it when the test process dies (a killed pytest leaves no Orthanc behind)."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> Orthanc:
    """A real Orthanc with the DICOMweb plugin for the whole session, stopped at its end."""
    why = orthanc_available()
    assert why is None, f"{why}: see the README's test command (apt-get install orthanc orthanc-dicomweb dicom3tools)"
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


class FaultyProxy:
    """A localhost HTTP proxy in front of ``target`` (host, port) that misbehaves on purpose.

    ``drop_after``: forward that many requests whose path contains ``drop_paths``, then close every later
    such connection without an answer (a server that goes away mid-study). ``refuse_post`` / ``refuse_get``: answer every POST (STOW-RS) /
    GET with this HTTP status instead of forwarding it. ``ignore_offset``: drop QIDO-RS's ``offset`` (a
    server that always answers the first page). One request per connection (``Connection: close``), so the count
    is the count of requests.
    """

    def __init__(self, target_port: int, *, drop_after: int | None = None, refuse_post: int | None = None,
                 refuse_get: int | None = None, drop_paths: str = "", ignore_offset: bool = False) -> None:
        self.target_port, self.drop_after, self.drop_paths, self.ignore_offset = target_port, drop_after, drop_paths, ignore_offset
        self.refuse = {"POST": refuse_post, "GET": refuse_get}
        self.requests: list[str] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)  # accept() wakes up to see close()
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def dicomweb(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(30)
            with conn:
                try:
                    self._handle(conn)
                except OSError:
                    pass

    def _handle(self, conn: socket.socket) -> None:
        head, body = _read_request(conn)
        if head is None:
            return
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.requests.append(line)
        method, path = line.split(" ")[:2]
        matching = [r for r in self.requests if self.drop_paths in r.split(" ")[1]]
        dropping = self.drop_after is not None and self.drop_paths in path and len(matching) > self.drop_after
        if dropping:
            return  # close without a word
        if self.refuse.get(method) is not None:
            msg = b"refused by the test proxy"
            conn.sendall(f"HTTP/1.1 {self.refuse[method]} Refused\r\nContent-Type: text/plain\r\nContent-Length: {len(msg)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + msg)
            return
        lines = [ln for ln in head.split(b"\r\n") if ln and not ln.lower().startswith((b"connection:", b"keep-alive:"))]
        if self.ignore_offset:  # a server that pages nothing: every QIDO-RS page is the first
            lines[0] = re.sub(rb"([?&])offset=\d+&?", rb"\1", lines[0])
        lines.append(b"Connection: close")
        with socket.create_connection(("127.0.0.1", self.target_port), timeout=30) as up:
            up.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
            answer = b""
            while b"\r\n\r\n" not in answer and (chunk := up.recv(1 << 16)):
                answer += chunk
            head, _, rest = answer.partition(b"\r\n\r\n")  # the client must not reuse this connection: say so
            head = b"\r\n".join(ln for ln in head.split(b"\r\n") if not ln.lower().startswith((b"connection:", b"keep-alive:")))
            conn.sendall(head + b"\r\nConnection: close\r\n\r\n" + rest)
            while chunk := up.recv(1 << 16):
                conn.sendall(chunk)


def _read_request(conn: socket.socket) -> tuple[bytes | None, bytes]:
    """One HTTP request's head and body (Content-Length or chunked body read whole)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return None, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n")[1:])}
    if b"content-length" in headers:
        n = int(headers[b"content-length"])
        while len(body) < n:
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            body += chunk
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            body += chunk
        head = b"\r\n".join(ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"transfer-encoding"))
        body = _dechunk(body)
        head += f"\r\nContent-Length: {len(body)}".encode()
    return head, body


def _dechunk(raw: bytes) -> bytes:
    out, i = b"", 0
    while True:
        j = raw.index(b"\r\n", i)
        n = int(raw[i:j].split(b";")[0], 16)
        if n == 0:
            return out
        out += raw[j + 2 : j + 2 + n]
        i = j + 2 + n + 2
