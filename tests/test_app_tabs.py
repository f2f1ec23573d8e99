"""Web app tabs without a server: Generate uses an edited prompt like --prompt, Inpaint opens DICOM,
a taken port is one sentence."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from data_fixtures import write_mammogram_dicom
from modise.app.state import AppSettings, AppState
from modise.errors import ModiseError


@pytest.fixture
def state(tmp_path):
    s = AppState(AppSettings(random_weights=True, size="tiny"), tmp_root=tmp_path)
    yield s
    s.cleanup()


def test_generate_uses_the_typed_prompt(state):
    from modise.app.generate_tab import generate

    prompt, gallery, files = generate(state, "siemens", "MLO", "high", "small", False, "L", 1, 5.0, 0, 1,
                                      prompt="a hologic mammogram in CC view with a mass")
    assert prompt == "a hologic mammogram in CC view with a mass"
    meta = json.loads(Path(next(f for f in files if f.endswith("prompt.json"))).read_text())
    assert meta["prompt"] == prompt
    built, _, _ = generate(state, "siemens", "MLO", "high", "small", False, "L", 1, 5.0, 0, 1, prompt="  ")
    assert built == "a siemens mammogram in MLO view with small area and high density"


def test_inpaint_opens_a_dicom(state, sample_images, tmp_path):
    from PIL import Image

    from modise.app.inpaint_tab import inpaint, load_background

    img = np.asarray(Image.open(sample_images[2]).convert("L"))[::2, ::2]
    dcm = write_mammogram_dicom(tmp_path / "healthy.dcm", img, monochrome1=True)
    shown = load_background(state, str(dcm))
    assert shown.shape == (*img.shape, 3) and np.median(np.abs(shown[..., 0].astype(int) - img)) <= 2
    result, mask, files = inpaint(state, None, True, 0, 2, 3.5, image_file=str(dcm))
    m = np.asarray(mask) > 127
    from modise.app.inpaint_tab import inpaint_summary

    ys, xs = np.nonzero(m)
    text = inpaint_summary(state, mask, True, 0, 2, 3.5)
    assert "random weights" in text and "NOT a trained model" in text and "Seed 0, 2 steps, guidance 3.5" in text
    assert f"automatic box at x {xs.min()}, y {ys.min()}, {np.ptp(xs) + 1} x {np.ptp(ys) + 1} px" in text, text
    assert np.asarray(result).shape == img.shape and m.any()
    assert np.median(np.abs(np.asarray(result).astype(int) - img)[~m]) <= 2  # unmasked pixels kept
    with pytest.raises(ModiseError, match="notes.txt"):
        (tmp_path / "notes.txt").write_text("no image")
        inpaint(state, None, True, 0, 2, 3.5, image_file=str(tmp_path / "notes.txt"))


def test_a_taken_port_is_one_sentence():
    from modise.app.server import check_port_free

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ModiseError) as err:
            check_port_free("127.0.0.1", port)
    msg = str(err.value)
    assert f"Port {port}" in msg and "--port" in msg and "launch()" not in msg and msg.count(". ") == 0


def test_optional_api_arguments_through_the_server(tmp_path, sample_images):
    """Through the running server: the own prompt and a DICOM for /inpaint are optional last arguments."""
    from gradio_client import Client, handle_file
    from PIL import Image

    from test_app_serve import Server

    srv = Server(tmp_path)
    try:
        c = Client(srv.url, verbose=False, download_files=str(tmp_path / "dl"))
        built, _, _ = c.predict("hologic", "CC", "(any)", "(any)", False, "L", 1, 5.0, 0, 1, api_name="/generate")
        assert built == "a hologic mammogram in CC view"
        own, _, _ = c.predict("hologic", "CC", "(any)", "(any)", False, "L", 1, 5.0, 0, 1, "my own prompt",
                              api_name="/generate")
        assert own == "my own prompt"
        img = np.asarray(Image.open(sample_images[2]).convert("L"))[::2, ::2]
        dcm = write_mammogram_dicom(tmp_path / "healthy.dcm", img)
        result, mask, _ = c.predict(None, True, 0, 2, 3.5, handle_file(str(dcm)), api_name="/inpaint")
        m = np.asarray(Image.open(mask).convert("L")) > 127
        res = np.asarray(Image.open(result).convert("L"))
        assert res.shape == img.shape and m.any() and np.median(np.abs(res.astype(int) - img)[~m]) <= 2
    finally:
        srv.stop()


@pytest.mark.browser
def test_browser_inpaints_a_dicom_and_names_the_model(tmp_path, sample_images):
    """Headless Chromium: the Segment tab names the (untrained) model; a DICOM opened in the Inpaint tab is inpainted."""
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from test_app_serve import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, Server

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: install Debian's chromium package"
    img = np.asarray(Image.open(sample_images[2]).convert("L"))[::2, ::2]
    dcm = write_mammogram_dicom(tmp_path / "healthy.dcm", img)
    srv = Server(tmp_path)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                page.goto(srv.url, wait_until="load")
                expect(page.locator("#segment-model")).to_contain_text("NOT a trained model", timeout=60_000)
                page.get_by_role("tab", name="Inpaint").click()
                expect(page.locator("#inpaint-button")).to_be_visible(timeout=30_000)
                page.locator("#inpaint-upload input[type=file]").set_input_files(str(dcm))
                # opened in the editor (its canvas shows it), the file box emptied for the next one
                expect(page.locator("#inpaint-editor canvas").first).to_be_visible(timeout=60_000)
                expect(page.locator("#inpaint-upload")).not_to_contain_text("healthy", timeout=60_000)
                page.get_by_label("Automatic box", exact=False).check()
                page.locator("#inpaint-button").click()
                expect(page.locator("#inpaint-result img")).to_be_visible(timeout=120_000)
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "serve_inpaint_dicom.png"), full_page=True)
            finally:
                browser.close()
    finally:
        srv.stop()
