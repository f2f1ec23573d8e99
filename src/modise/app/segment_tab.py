"""Segment tab: upload a mammogram (PNG / JPEG / TIFF / DICOM), run a trained M-ODISE, review and
export the lesions. API name ``/segment``.

The work is :func:`segment_file`, built on the prediction API of ``modise predict``
(:class:`~modise.pipeline.ModisePipeline`, its :class:`~modise.pipeline.PanopticResult` written through
:class:`~modise.data.panoptic.PanopticFolderWriter`, and :mod:`modise.dicom`'s SEG and SR writers).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from modise.app.state import AppState
from modise.errors import ModiseError

Progress = Callable[..., Any]


@dataclass
class SegmentResult:
    overlay: Any  # PIL RGB
    headers: list[str]
    rows: list[list]
    heatmaps: list[tuple]  # [(PIL, caption)]
    files: list[str]
    summary: str
    warnings: list[str] = field(default_factory=list)


def load_upload(state: AppState, path: str | Path | None):
    """Read an uploaded file with the CLI's reader; errors name the file as uploaded, not the temp path."""
    from modise.data.imageio import read_image

    if not path:
        raise ModiseError("Upload a mammogram (PNG, JPEG, TIFF or DICOM) first.")
    path = Path(path)
    from .state import MB

    limit = state.settings.max_upload_mb
    if path.is_file() and path.stat().st_size > state.settings.max_upload_bytes:
        raise ModiseError(f"{path.name}: the file is {path.stat().st_size / MB:.1f} MB, more than the {limit:g} MB limit.")
    try:
        im = read_image(path)
    except ModiseError as e:
        raise ModiseError(str(e).replace(str(path), path.name)) from None
    except Exception as e:  # noqa: BLE001  any decoder failure is a bad upload, not a server error
        raise ModiseError(f"{path.name}: not a readable image ({type(e).__name__}: {e}).") from None
    h, w = im.pixels.shape[:2]
    if h * w > state.settings.max_pixels:
        raise ModiseError(f"{path.name}: {w}x{h} px is larger than the {state.settings.max_pixels / 1e6:g} megapixel limit.")
    if min(h, w) < 16:
        raise ModiseError(f"{path.name}: {w}x{h} px is too small to be a mammogram.")
    return im


def segment_file(
    state: AppState,
    path: str | Path | None,
    run: str | None,
    object_mask_threshold: float,
    overlap_threshold: float,
    progress: Progress | None = None,
) -> SegmentResult:
    """Predict the lesions of one upload; write the COCO panoptic JSON + PNG (and a DICOM SEG + SR for DICOM)."""
    from modise.data.panoptic import PanopticFolderWriter

    from . import views

    step = progress or (lambda *a, **k: None)
    step(0.05, desc="reading the image")
    im = load_upload(state, path)
    name = Path(path).stem
    step(0.15, desc="loading the model")
    pipe = state.segmentation_pipeline(run)
    step(0.35, desc="segmenting")
    with state.lock:  # one model run at a time per server (the other tabs share the lock)
        result = pipe([im.pixels], object_mask_threshold=float(object_mask_threshold), overlap_threshold=float(overlap_threshold))[0]
    used = (result.settings.object_mask_threshold, result.settings.overlap_threshold)
    step(0.8, desc="writing results")
    cats = pipe.categories
    ids = result.ids
    h, w = ids.shape
    job = state.job_dir("segment")
    png, js = job / f"{name}_panoptic.png", job / f"{name}_panoptic.json"
    info = {"description": "modise serve prediction", "model": state.model_description(run),
            "object_mask_threshold": used[0], "overlap_threshold": used[1]}
    writer = PanopticFolderWriter(job, cats, info=info, png_dir=job, json_name=js.name)
    segments = result.write(writer, {"id": 1, "file_name": Path(path).name}, png_name=png.name, instances=False)["segments_info"]
    writer.finish()
    files, warnings = [str(js), str(png)], []
    if im.is_dicom:
        from modise.dicom.results import write_results

        try:
            fingerprint = model_fingerprint_of(state, run, pipe, result.settings.record())
            files += [str(p) for p in write_results(job / f"{name}_seg.dcm", job / f"{name}_sr.dcm", im.dataset, ids,
                                                    segments, cats, fingerprint)]
        except Exception as e:  # noqa: BLE001  highdicom rejects some sources (e.g. missing UIDs); keep the rest
            warnings.append(f"DICOM SEG/SR not written for {Path(path).name}: {type(e).__name__}: {e}")
    sem = result.sem_seg
    spacing = im.meta.get("pixel_spacing")
    headers, rows = views.lesion_rows(segments, cats, spacing)
    unit = f"pixel spacing {spacing[0]:g} x {spacing[1]:g} mm" if spacing else "no pixel spacing: areas in px"
    summary = (f"**{len(segments)} lesion(s)** in `{Path(path).name}` ({w}x{h} px, {unit}).\n\n"
               f"**Model**: {md_escape(state.model_description(run))}; object-mask threshold {used[0]:g}, "
               f"overlap threshold {used[1]:g}.")
    step(1.0, desc="done")
    return SegmentResult(views.labelled_overlay(im.pixels, ids, segments, cats), headers, rows,
                         views.class_heatmaps(im.pixels, sem, cats), files, summary, warnings)


def model_fingerprint_of(state: AppState, run: str | None, pipe: Any, settings_record: dict[str, Any]) -> str:
    """The fingerprint the SEG/SR UIDs derive from: the run's model files when the run is a folder (cached
    while they do not change), else the loaded model itself (the random-weights model)."""
    from modise.dicom.uids import model_fingerprint

    path = state.run_paths.get(run or "")
    return model_fingerprint(path if path is not None else pipe, settings_record)


def md_escape(text: str) -> str:
    """Plain text for a Markdown component (run paths often hold underscores)."""
    return "".join("\\" + c if c in "\\`*_[]<>#" else c for c in text)


def _model_line(state: AppState, run: str | None) -> str:
    return f"**Model in use**: {md_escape(state.model_description(run))}" if run else ""


def _pacs_row(state: AppState, upload: Any) -> None:
    """A Study Instance UID field and a list of its images; the image picked fills the upload box."""
    import gradio as gr

    from modise.app.user_errors import user_errors
    from modise.dicom.dicomweb import display_url

    from .pacs import open_image, study_images

    with gr.Group():
        study = gr.Textbox(label=f"Study Instance UID on {display_url(state.settings.dicomweb_url)}", elem_id="segment-study-uid")
        find = gr.Button("Open study", elem_id="segment-study-open")
        image = gr.Dropdown(choices=[], label="Image of the study", elem_id="segment-study-image")

    @user_errors
    def open_study(uid):
        choices = study_images(state, uid)
        return gr.update(choices=choices, value=choices[0][1])

    @user_errors
    def fetch(uid, choice):
        return str(open_image(state, uid, choice)) if choice else None

    find.click(open_study, study, image, api_name="open_study")
    image.change(fetch, [study, image], upload, api_name="open_image")


def build_segment_tab(state: AppState) -> None:
    """Add the Segment tab's components and its ``/segment`` event to the current Blocks."""
    import gradio as gr

    from modise.app.user_errors import user_errors

    from . import views

    choices = state.run_choices
    run0 = choices[0] if choices else None
    omt0, ovt0 = state.default_thresholds(run0)
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Mammogram (PNG, JPEG, TIFF or DICOM)", type="filepath", elem_id="segment-upload")
            if state.settings.dicomweb_url:
                _pacs_row(state, upload)
            run = gr.Dropdown(choices=choices, value=run0, label="Trained run", elem_id="segment-run",
                              info=None if choices else "No run: start with --run RUN, --runs-dir DIR or --random-weights")
            model_info = gr.Markdown(_model_line(state, run0), elem_id="segment-model")
            omt = gr.Slider(0.0, 1.0, value=omt0, step=0.01, label="Object-mask threshold",
                            info="keep a query when its class probability exceeds this")
            ovt = gr.Slider(0.0, 1.0, value=ovt0, step=0.01, label="Overlap threshold",
                            info="keep a segment when this share of its mask survives overlaps")
            button = gr.Button("Segment", variant="primary", elem_id="segment-button")
            summary = gr.Markdown(elem_id="segment-summary")
        with gr.Column(scale=2):
            gr.Markdown("**Panoptic overlay**: lesions outlined in their class colour, labelled `#n class score`")
            # no label badge: it would cover the labels of lesions at the image's top left
            overlay = gr.Image(label="Panoptic overlay", show_label=False, type="pil", format="png",
                               interactive=False, elem_id="segment-overlay")
            # the table's own columns before the first run (an empty Dataframe shows "1 2 3")
            table = gr.Dataframe(headers=views.lesion_rows([], [], None)[0], label="Lesions", interactive=False,
                                 elem_id="segment-table")
            heatmaps = gr.Gallery(label="Per-class semantic scores (summed over queries: not probabilities, can pass 1; "
                                        "colours saturate at 1)", columns=3, height="auto", format="png", elem_id="segment-heatmaps")
            files = gr.File(label="Downloads: COCO panoptic JSON + PNG (+ DICOM SEG and SR for DICOM inputs)",
                            file_count="multiple", interactive=False, elem_id="segment-files")

    def on_run(r):
        a, b = state.default_thresholds(r)
        return gr.update(value=a), gr.update(value=b), _model_line(state, r)

    run.change(on_run, run, [omt, ovt, model_info], api_visibility="private")

    @user_errors
    def segment(path, run_choice, object_mask_threshold, overlap_threshold, progress=gr.Progress()):
        res = segment_file(state, path, run_choice, object_mask_threshold, overlap_threshold, progress)
        for w in res.warnings:
            print(f"warning: {w}", file=sys.stderr)
            gr.Warning(w)
        import pandas as pd

        return res.overlay, pd.DataFrame(res.rows, columns=res.headers), res.heatmaps, res.files, res.summary

    button.click(segment, [upload, run, omt, ovt], [overlay, table, heatmaps, files, summary], api_name="segment")
