"""``modise serve``: the real server (a subprocess on a free loopback port, random tiny models),
driven through its API with ``gradio_client`` and once through headless Chromium."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data_fixtures import write_mammogram_dicom

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
RANDOM_RUN = "random weights (offline)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seed_with_lesions(tries: int = 30) -> int:
    """The first seed whose random tiny m2f-sd (heads seeded as the app seeds them) labels some
    query of a sample mammogram as a lesion class rather than void."""
    import torch

    from modise.data.phantoms import CATEGORIES
    from modise.model import build_model

    from conftest import SAMPLE_DIR

    px = torch.from_numpy(np.array(grey(sorted((SAMPLE_DIR / "images").glob("*.jpg"))[0]))).float() / 255
    x = torch.nn.functional.interpolate(px[None, None].expand(1, 3, -1, -1), size=(128, 128), mode="bilinear")
    for seed in range(tries):
        torch.manual_seed(seed)
        model = build_model("m2f-sd", "tiny", random_weights=True, categories=list(CATEGORIES)).eval()
        with torch.no_grad():
            labels = model(x)["pred_logits"].argmax(-1)
        if (labels < len(CATEGORIES)).sum() >= 2:
            return seed
    raise AssertionError(f"no seed in 0..{tries - 1} gives a random m2f-sd that sees lesions")


class Server:
    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.log = tmp / "serve.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        # m2f-sd: its random linear head builds in a second; the seed is one whose random head calls
        # some queries lesions (another may call every query void, and a table of nothing tests nothing)
        cmd = [sys.executable, "-m", "modise", "serve", "--random-weights", "--size", "tiny", "--preset", "m2f-sd",
               "--port", str(self.port), "--max-upload-mb", "1", "--seed", str(_seed_with_lesions())]
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=tmp)
        self.url = self._wait_for_url(timeout=150)
        self.tmp_dir = Path(re.search(r"uploads in (\S+),", self.log.read_text()).group(1))

    def _wait_for_url(self, timeout: float) -> str:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"modise serve exited {self.proc.returncode}:\n{self.log.read_text()}")
            if sel.select(timeout=1.0):
                line = self.proc.stdout.readline().strip()
                if line.startswith("http"):
                    return line
        self.stop()
        raise RuntimeError(f"modise serve did not start in {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("serve"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def grey(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"))


def test_api_lists_the_three_endpoints(client):
    assert {"/segment", "/generate", "/inpaint"} <= set(client.view_api(return_format="dict")["named_endpoints"])


def test_segment_jpeg_writes_panoptic_that_matches_the_table(client, sample_images):
    from gradio_client import handle_file
    from PIL import Image

    from modise.data.panoptic import read_id_png

    src = sample_images[0]
    overlay, table, heatmaps, files, summary = client.predict(handle_file(str(src)), RANDOM_RUN, 0.0, 0.5, api_name="/segment")
    assert Image.open(overlay).size == Image.open(src).size
    assert table["headers"][:4] == ["lesion", "class", "score", "area (px)"]
    names = {Path(f).name: f for f in files}
    assert set(names) == {f"{src.stem}_panoptic.json", f"{src.stem}_panoptic.png"}
    coco = json.loads(Path(names[f"{src.stem}_panoptic.json"]).read_text())
    ids = read_id_png(names[f"{src.stem}_panoptic.png"])
    assert ids.shape == grey(src).shape
    segments = coco["annotations"][0]["segments_info"]
    assert len(segments) == len(table["data"]) >= 1  # threshold 0: a random linear head has non-void queries
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    assert set(cats.values()) == {"circumscribed_mass", "spiculated_mass"}
    for row, s in zip(table["data"], segments):
        assert row[1] == cats[s["category_id"]] and row[3] == s["area"] == int((ids == s["id"]).sum())
    # each segment is drawn in colour over the grey image
    rgb = np.asarray(Image.open(overlay).convert("RGB")).astype(int)
    painted = ids == segments[0]["id"]
    assert np.abs(rgb[..., 0] - rgb[..., 2])[painted].mean() > 20
    assert [h["caption"].split(" (")[0] for h in heatmaps] == ["circumscribed_mass", "spiculated_mass"]
    assert f"{len(segments)} lesion(s)" in summary


def test_segment_dicom_monochrome1_gives_mm2_and_dicom_seg_and_sr(client, sample_images, tmp_path):
    import highdicom as hd
    import pydicom
    from gradio_client import handle_file

    img = grey(sample_images[1])[::2, ::2]  # 256 x 256 keeps it quick
    dcm = write_mammogram_dicom(tmp_path / "mg.dcm", img, monochrome1=True, spacing_mm=0.1)
    overlay, table, _, files, summary = client.predict(handle_file(str(dcm)), RANDOM_RUN, 0.0, 0.5, api_name="/segment")
    assert table["headers"][3] == "area (mm²)" and "pixel spacing 0.1 x 0.1 mm" in summary
    names = {Path(f).name: f for f in files}
    coco = json.loads(Path(names["mg_panoptic.json"]).read_text())
    areas_px = [s["area"] for s in coco["annotations"][0]["segments_info"]]
    assert [row[3] for row in table["data"]] == pytest.approx([a * 0.01 for a in areas_px])
    # MONOCHROME1 was inverted back: the overlay's unpainted pixels show the original grey
    from modise.data.panoptic import read_id_png

    ids = read_id_png(names["mg_panoptic.png"])
    free = ids == 0
    if free.any():
        # median, not mean: outlines and score labels of a random model paint some free pixels
        assert np.median(np.abs(grey(overlay).astype(int) - img)[free]) <= 2
    seg = hd.seg.segread(names["mg_seg.dcm"])
    src = pydicom.dcmread(dcm)
    refs = [r.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence]
    assert refs == [src.SOPInstanceUID] and seg.StudyInstanceUID == src.StudyInstanceUID
    planes = seg.get_pixels_by_source_instance([src.SOPInstanceUID], combine_segments=False)[0]
    by_cat = {c["name"]: c["id"] for c in coco["categories"]}
    n = len(coco["annotations"][0]["segments_info"])  # instance segments first, then one per class
    for k, name in enumerate(["circumscribed_mass", "spiculated_mass"]):
        want = np.isin(ids, [s["id"] for s in coco["annotations"][0]["segments_info"] if s["category_id"] == by_cat[name]])
        assert np.array_equal(planes[..., n + k].astype(bool), want)
    sr = hd.sr.srread(names["mg_sr.dcm"])  # the TID 1500 report beside it, one group per instance
    assert len(sr.content.get_planar_roi_measurement_groups()) == n


@pytest.mark.parametrize("kind", ["not-an-image", "unreadable-dicom", "too-large"])
def test_bad_upload_is_a_message_and_the_server_keeps_serving(client, server, tmp_path, kind):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    if kind == "not-an-image":
        bad, expect = tmp_path / "notes.png", "notes.png: not a readable image"
        bad.write_text("this is a text file, not a mammogram")
    elif kind == "unreadable-dicom":
        bad, expect = tmp_path / "broken.dcm", "broken.dcm"
        bad.write_bytes(b"\0" * 128 + b"DICM" + os.urandom(300))
    else:
        bad, expect = tmp_path / "huge.png", "huge.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(1_200_000))  # over the server's --max-upload-mb 1
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(bad)), RANDOM_RUN, 0.5, 0.5, api_name="/segment")
    message = str(err.value)
    if kind == "too-large":
        assert "exceeds the maximum file size of 1048576 bytes"  # MB = 2**20, as the app shows it in message, message
        import httpx  # the client checks first; the server refuses it too

        with open(bad, "rb") as f:
            r = httpx.post(f"{server.url}gradio_api/upload", files={"files": (bad.name, f)})
        assert r.status_code == 413, r.text
    else:
        assert isinstance(err.value, AppError) and expect in message and "Traceback" not in message, message
    assert server.proc.poll() is None
    prompt, _, _ = client.predict("hologic", "CC", "(any)", "(any)", False, "L", 1, 5.0, 0, 1, api_name="/generate")
    assert prompt == "a hologic mammogram in CC view"


def test_generate_builds_the_prompt_and_mirrors_right_breasts(client):
    args = ("siemens", "MLO", "high", "small", True)
    prompt, gallery_l, files = client.predict(*args, "L", 2, 5.0, 7, 2, api_name="/generate")
    assert prompt == "a siemens mammogram in MLO view with high density and small area"
    assert [g["caption"] for g in gallery_l] == ["seed 7", "seed 8"]
    meta = json.loads(Path(next(f for f in files if f.endswith("prompt.json"))).read_text())
    assert meta["prompt"] == prompt and meta["seeds"] == [7, 8]
    left = [grey(g["image"]) for g in gallery_l]
    assert left[0].shape == (128, 128) and not np.array_equal(left[0], left[1])  # tiny MAM-E: 16 latents x 8
    _, gallery_r, _ = client.predict(*args, "R", 2, 5.0, 7, 1, api_name="/generate")
    assert np.array_equal(grey(gallery_r[0]["image"]), left[0][:, ::-1])


def test_inpaint_changes_only_the_masked_region(client, sample_images, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    from PIL import Image

    src = sample_images[2]
    before = grey(src)
    # a brush stroke: an RGBA layer, transparent except for a painted disc
    yy, xx = np.mgrid[: before.shape[0], : before.shape[1]]
    disc = (yy - 250) ** 2 + (xx - 200) ** 2 < 30 ** 2
    layer = np.zeros((*before.shape, 4), np.uint8)
    layer[disc] = (255, 48, 48, 255)
    Image.fromarray(layer, "RGBA").save(tmp_path / "stroke.png")
    editor = {"background": handle_file(str(src)), "layers": [handle_file(str(tmp_path / "stroke.png"))], "composite": None}
    result, mask, files = client.predict(editor, False, 3, 2, 3.5, api_name="/inpaint")
    after, m = grey(result), grey(mask) > 127
    assert np.array_equal(m, disc)
    assert np.array_equal(after[~m], before[~m]) and not np.array_equal(after[m], before[m])
    assert sorted(Path(f).name for f in files) == ["inpainted_seed3.png", "lesion_mask_seed3.png"]

    auto = {"background": handle_file(str(src)), "layers": [], "composite": None}
    result, mask, _ = client.predict(auto, True, 0, 2, 3.5, api_name="/inpaint")
    m = grey(mask) > 127
    ys, xs = np.nonzero(m)
    assert m.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # a box
    assert np.array_equal(grey(result)[~m], before[~m])

    with pytest.raises(AppError, match="Draw the lesion region"):
        client.predict(auto, False, 0, 2, 3.5, api_name="/inpaint")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(AppError, match="cannot identify image file"):  # Gradio's own check, before ours
        client.predict({"background": handle_file(str(tmp_path / "notes.png")), "layers": [], "composite": None},
                       True, 0, 2, 3.5, api_name="/inpaint")


@pytest.mark.browser
def test_browser_segments_a_sample_mammogram(server, sample_images):
    """Headless Chromium: open the page, upload a real mammogram, run Segment, wait for the overlay."""
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: install Debian's chromium package (see .ci/run)"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "serve_segment.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(server.url, wait_until="load")
            # upload only once the app has hydrated, or a loaded CI machine can drop the file
            expect(page.locator("#segment-button")).to_be_visible(timeout=60_000)
            page.locator("#segment-upload input[type=file]").set_input_files(str(sample_images[0]))
            # Gradio renders the name as stem + extension in two spans (sometimes with a space between)
            expect(page.locator("#segment-upload")).to_contain_text(sample_images[0].stem, timeout=60_000)
            page.locator("#segment-button").click()
            expect(page.locator("#segment-overlay img")).to_be_visible(timeout=90_000)
            expect(page.locator("#segment-summary")).to_contain_text("lesion(s)", timeout=30_000)
            expect(page.locator("#segment-table")).to_contain_text("mass", timeout=30_000)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


def test_stop_removes_the_temporary_folder(server):
    """Last: SIGTERM stops the server cleanly and takes the uploads folder with it."""
    assert server.tmp_dir.is_dir() and any((server.tmp_dir / "gradio").iterdir())
    assert server.stop() == 0
    assert not server.tmp_dir.exists()
