"""Inpaint tab: paint a lesion into a healthy mammogram with MAM-E's inpainting model, in a region
drawn with the brush or in an automatic box. API name ``/inpaint``.

The work is :func:`inpaint`, built on ``modise inpaint``'s API (:func:`inpaint_lesion`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from modise.app.state import AppState
from modise.errors import ModiseError


def _grey(image: np.ndarray) -> np.ndarray:
    """Editor background (H, W[, C]) -> (H, W) uint8 grey (RGB mean; alpha ignored)."""
    a = np.asarray(image)
    if a.ndim == 3:
        a = a[..., :3].astype(np.float32).mean(axis=2) if a.shape[2] >= 3 else a[..., 0]
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a * (255.0 if a.max(initial=0) <= 1.0 else 1.0)), 0, 255)
    return a.astype(np.uint8)


def mask_from_layers(layers: list | None, shape: tuple[int, int]) -> np.ndarray | None:
    """Union of the painted pixels of the editor's layers (alpha > 0), at the background's size."""
    from PIL import Image

    mask = None
    for layer in layers or []:
        a = np.asarray(layer)
        painted = a[..., 3] > 0 if a.ndim == 3 and a.shape[2] == 4 else (a.max(axis=2) if a.ndim == 3 else a) > 0
        if painted.shape != shape:  # the canvas can differ from the image; scale strokes onto it
            painted = np.asarray(Image.fromarray(painted).resize((shape[1], shape[0]), Image.NEAREST))
        mask = painted if mask is None else mask | painted
    return mask if mask is not None and mask.any() else None


def load_background(state: AppState, path: str | None) -> np.ndarray:
    """An uploaded file (PNG / JPEG / TIFF / DICOM, read as the Segment tab reads it) -> (H, W, 3) uint8 for the editor."""
    from .segment_tab import load_upload

    grey = load_upload(state, path).uint8
    return np.repeat(grey[..., None], 3, axis=2)


def inpaint(
    state: AppState,
    editor: dict | None,
    auto_box: bool,
    seed: int,
    steps: int,
    guidance: float,
    progress: Callable[..., Any] | None = None,
    image_file: str | None = None,
) -> tuple[Any, Any, list[str]]:
    """Editor value ``{background, layers, composite}`` -> (result PIL L, mask PIL L, [result PNG, mask PNG]).

    ``image_file`` (optional; e.g. a DICOM, which the editor cannot open): the mammogram to inpaint,
    in place of the editor's background; brush strokes are scaled onto it."""
    from PIL import Image

    from modise.synthesis import inpaint_lesion

    from .generate_tab import step_callback

    background = load_background(state, image_file) if image_file else (editor or {}).get("background")
    if background is None:
        raise ModiseError("Upload a healthy mammogram into the editor (or a file, e.g. DICOM) first.")
    grey = _grey(background)
    h, w = grey.shape
    if h * w > state.settings.max_pixels:
        raise ModiseError(f"The image is {w}x{h} px, larger than the {state.settings.max_pixels / 1e6:g} megapixel limit.")
    mask = None if auto_box else mask_from_layers((editor or {}).get("layers"), (h, w))
    if mask is None and not auto_box:
        raise ModiseError("Draw the lesion region with the brush, or tick 'automatic box'.")
    if progress is not None:
        progress(0.0, desc="loading MAM-E inpainting")
    pipe = state.mame_pipeline("inpaint")
    steps = int(steps)
    with state.lock:
        result, used = inpaint_lesion(pipe, grey, mask=mask, auto_box=bool(auto_box), seed=int(seed), steps=steps,
                                      guidance=float(guidance), callback=step_callback(progress, steps, "inpainting"))
    mask_im = Image.fromarray(np.asarray(used, np.uint8) * 255)
    job = state.job_dir("inpaint")
    paths = [job / f"inpainted_seed{int(seed)}.png", job / f"lesion_mask_seed{int(seed)}.png"]
    result.save(paths[0])
    mask_im.save(paths[1])
    return result, mask_im, [str(p) for p in paths]


def inpaint_summary(state: AppState, mask: Any, auto_box: bool, seed: int, steps: int, guidance: float) -> str:
    """Markdown: the model, the region painted (box or brushed, in image pixels) and the settings."""
    from .segment_tab import md_escape

    m = np.asarray(mask) > (127 if np.asarray(mask).dtype == np.uint8 else 0)
    if not m.any():
        return ""
    ys, xs = np.nonzero(m)
    box = f"x {xs.min()}, y {ys.min()}, {xs.max() - xs.min() + 1} x {ys.max() - ys.min() + 1} px"
    region = f"automatic box at {box}" if auto_box else f"brushed region of {int(m.sum())} px within {box}"
    return (f"**Model**: {md_escape(state.mame_description('inpaint'))}.\n\n**Region**: {region}. "
            f"Seed {int(seed)}, {int(steps)} steps, guidance {float(guidance):g}.")


def build_inpaint_tab(state: AppState) -> None:
    """Add the Inpaint tab's components and its ``/inpaint`` event to the current Blocks."""
    import gradio as gr

    from modise.app.user_errors import user_errors

    with gr.Row():
        with gr.Column(scale=3):
            upload = gr.File(label="Open a mammogram file (PNG, JPEG, TIFF or DICOM) in the editor below",
                             type="filepath", elem_id="inpaint-upload")
            editor = gr.ImageEditor(
                label="Healthy mammogram (paint the lesion)", height=560,
                type="numpy", image_mode="RGBA", sources=("upload", "clipboard"), transforms=(),
                brush=gr.Brush(colors=["#ff3030"], color_mode="fixed", default_size=24), layers=False,
                elem_id="inpaint-editor",
            )
            auto = gr.Checkbox(False, label="Automatic box (ignore the brush; a lesion-sized box inside the breast)")
            seed = gr.Number(0, precision=0, label="Seed")
            steps = gr.Slider(1, 100, value=40, step=1, label="Denoising steps")  # MAM-E: 40 steps, guidance 4
            guidance = gr.Slider(1.0, 15.0, value=4.0, step=0.5, label="Guidance scale")
            button = gr.Button("Inpaint", variant="primary", elem_id="inpaint-button")
        with gr.Column(scale=4):
            with gr.Row():
                result = gr.Image(label="Result", type="pil", format="png", interactive=False, elem_id="inpaint-result")
                mask = gr.Image(label="Lesion mask", type="pil", format="png", interactive=False, elem_id="inpaint-mask")
            summary = gr.Markdown(elem_id="inpaint-summary")
            files = gr.File(label="Downloads (result + mask PNG)", file_count="multiple", interactive=False)

    @user_errors
    def open_file(path):
        if not path:
            return gr.update(), gr.update()
        image = load_background(state, path)
        # the editor now holds the image; the file box is emptied so it cannot override a later editor upload
        return {"background": image, "layers": [], "composite": image}, None

    upload.upload(open_file, upload, [editor, upload], api_visibility="private")

    @user_errors
    def run(editor_, auto_, seed_, steps_, guidance_, file_=None, progress=gr.Progress()):
        return inpaint(state, editor_, auto_, seed_, steps_, guidance_, progress, image_file=file_)

    # the file is the last input and optional (API callers may send the editor value alone)
    event = button.click(run, [editor, auto, seed, steps, guidance, upload], [result, mask, files], api_name="inpaint")
    # the summary reads the mask shown; a separate step keeps /inpaint's outputs as they are for API callers
    event.success(lambda m, a, s, st, g: inpaint_summary(state, m, a, s, st, g) if m is not None else "",
                  [mask, auto, seed, steps, guidance], summary, api_visibility="private")
