"""Generate tab: MAM-E text-to-image with its prompt vocabulary. API name ``/generate``.

The work is :func:`generate`, built on ``modise generate``'s API (:func:`build_prompt`,
:func:`generate_images`); the prompt is rebuilt live as the controls change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from modise.app.state import AppState
from modise.synthesis.prompts import AREAS, DENSITIES, VENDORS, VIEWS, build_prompt

ANY = "(any)"
MAX_COUNT = 8


def _opt(value: str | None) -> str | None:
    return None if value in (None, "", ANY) else value


def prompt_for(vendor: str | None, view: str | None, density: str | None, area: str | None, density_first: bool) -> str:
    """MAM-E's prompt for the controls; ``(any)`` drops a part with its words."""
    return build_prompt(_opt(vendor), _opt(view), _opt(density), _opt(area), bool(density_first))


def step_callback(progress: Callable[..., Any] | None, total: int, desc: str):
    """A diffusers ``callback_on_step_end`` that advances ``progress`` once per denoising step."""
    done = [0]

    def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        done[0] += 1
        if progress is not None:
            progress((done[0], total), desc=desc)
        return kwargs

    return on_step_end


def generate(
    state: AppState,
    vendor: str | None, view: str | None, density: str | None, area: str | None, density_first: bool,
    laterality: str, steps: int, guidance: float, seed: int, count: int,
    progress: Callable[..., Any] | None = None, prompt: str | None = None,
) -> tuple[str, list[tuple], list[str]]:
    """-> (prompt, [(PIL image, caption)], PNG paths). Image ``i`` uses seed ``seed + i``, as the CLI.

    ``prompt``: text typed by the user, used as is (like ``--prompt``); empty: built from the controls."""
    from modise.errors import ModiseError
    from modise.outputs import write_json_atomic
    from modise.synthesis import generate_images

    prompt = (prompt or "").strip() or prompt_for(vendor, view, density, area, density_first)
    count, steps, seed = int(count), int(steps), int(seed)
    if not 1 <= count <= MAX_COUNT:
        raise ModiseError(f"Count must be between 1 and {MAX_COUNT}, not {count}.")
    if progress is not None:
        progress(0.0, desc="loading MAM-E")
    pipe = state.mame_pipeline("text2img")
    callback = step_callback(progress, count * steps, "denoising")
    with state.lock:
        images = generate_images(pipe, prompt, n=count, seed=seed, steps=steps, guidance=float(guidance),
                                 laterality=laterality, callback=callback)
    job = state.job_dir("generate")
    files, gallery = [], []
    for i, im in enumerate(images):
        path = job / f"mame_seed{seed + i}_{laterality}.png"
        im.save(path)
        files.append(str(path))
        gallery.append((im, f"seed {seed + i}"))
    meta = job / "prompt.json"
    write_json_atomic(meta, {"prompt": prompt, "seeds": [seed + i for i in range(count)], "steps": steps,
                             "guidance": float(guidance), "laterality": laterality, "files": [Path(p).name for p in files]})
    return prompt, gallery, files + [str(meta)]


def build_generate_tab(state: AppState) -> None:
    """Add the Generate tab's components and its ``/generate`` event to the current Blocks."""
    import gradio as gr

    from modise.app.user_errors import user_errors

    with gr.Row():
        with gr.Column(scale=1):
            vendor = gr.Dropdown([ANY, *VENDORS], value="siemens", label="Vendor")
            view = gr.Dropdown([ANY, *VIEWS], value="MLO", label="View")
            density = gr.Dropdown([ANY, *DENSITIES], value="high", label="Density")
            area = gr.Dropdown([ANY, *AREAS], value="small", label="Breast area")
            density_first = gr.Checkbox(False, label="Density before area in the prompt")
            laterality = gr.Radio(["L", "R"], value="L", label="Laterality (R mirrors the image)")
            steps = gr.Slider(1, 100, value=24, step=1, label="Denoising steps")
            guidance = gr.Slider(1.0, 15.0, value=5.0, step=0.5, label="Guidance scale")
            seed = gr.Number(0, precision=0, label="Seed (image i uses seed + i)")
            count = gr.Slider(1, MAX_COUNT, value=2, step=1, label="Count")
            prompt = gr.Textbox(prompt_for("siemens", "MLO", "high", "small", False), label="Prompt (built from the controls)",
                                interactive=False, elem_id="generate-prompt")
            # empty by default, so API callers that leave it out get the built prompt
            own_prompt = gr.Textbox("", label="Your own prompt (optional, like --prompt: replaces the built one)",
                                    placeholder="e.g. a hologic mammogram in CC view with high density",
                                    interactive=True, elem_id="generate-own-prompt")
            button = gr.Button("Generate", variant="primary", elem_id="generate-button")
        with gr.Column(scale=2):
            gallery = gr.Gallery(label="Generated mammograms", columns=4, height="auto", format="png", elem_id="generate-gallery")
            files = gr.File(label="Downloads (PNG + prompt.json)", file_count="multiple", interactive=False)

    parts = [vendor, view, density, area, density_first]
    for c in parts:
        c.change(prompt_for, parts, prompt, api_visibility="private", queue=False)

    @user_errors
    def run(vendor_, view_, density_, area_, first_, lat_, steps_, guidance_, seed_, count_, prompt_="",
            progress=gr.Progress()):
        return generate(state, vendor_, view_, density_, area_, first_, lat_, steps_, guidance_, seed_, count_, progress,
                        prompt=prompt_)

    # the prompt is the last input and optional: API callers may leave it out to build it from the controls
    button.click(run, [vendor, view, density, area, density_first, laterality, steps, guidance, seed, count, own_prompt],
                 [prompt, gallery, files], api_name="generate")
