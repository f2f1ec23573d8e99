"""``modise generate``, ``modise inpaint``, ``modise augment`` and ``modise mame prepare|train``.

Heavy imports (torch, diffusers) stay inside the command bodies so ``modise --help`` is fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from modise.checks import check_disk_room
from modise.cli_options import (
    MODEL_METAVAR, ModelSize, Overwrite, RandomWeights, SamplingSteps, Size, choices_metavar, multiple_of, one_of,
    positive_float, size_value,
)
from modise.errors import ModiseError
from modise.synthesis.prompts import AREAS, BIRADS_DENSITY, DENSITIES, VENDORS, VIEWS

Out = typer.Option(..., "--out", help="Output folder (refused if not empty unless --overwrite).")
Seed = typer.Option(0, "--seed", min=0, help="Random seed; image i uses seed+i.")
MODES = ("whole", "crop")
Mode = typer.Option(None, "--mode", parser=one_of(MODES), metavar=choices_metavar(MODES), show_default="whole, or crop with --crop-size",
                    help="whole: MAM-E's way, the whole image as the 512 frame | crop: a native-resolution window around "
                    "the lesion, keeps detail on large images.")
VAE_SIDE = multiple_of(8, "the VAE's downscale")
CropSize = typer.Option(None, "--crop-size", "--crop", parser=VAE_SIDE, show_default="the model's, 512",
                        help="Window side of --mode crop, a multiple of 8.")
Json = typer.Option(False, "--json", help="Print the summary as JSON on stdout.")
INPAINT_MODEL_HELP = "Inpainting pipeline: hub id or folder (a `mame train --inpainting` run)."
DENSITY_CHOICES = (*DENSITIES, *BIRADS_DENSITY)  # MAM-E's words or a BI-RADS letter
LATERALITIES = ("L", "R")


def _choice(default: Optional[str], name: str, names: tuple[str, ...], help: str, **kw):
    """A case-insensitive choice option whose help line lists the choices."""
    return typer.Option(default, name, parser=one_of(names, kw.pop("aliases", None)), metavar=choices_metavar(names),
                        help=help, **kw)


def _warn(msg: str) -> None:
    from modise.progress import stderr_console

    stderr_console().print(f"[yellow]warning:[/] {msg}")


def _report(summary: dict, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(summary) if as_json else text)


def generate(
    vendor: Optional[str] = _choice(None, "--vendor", VENDORS, "Mammography unit maker in the prompt."),
    view: Optional[str] = _choice(None, "--view", VIEWS, "View in the prompt."),
    density: Optional[str] = _choice(None, "--density", DENSITY_CHOICES, "Breast density in the prompt: MAM-E's words or BI-RADS A-D.",
                                     aliases={f"density {k.lower()}": k for k in BIRADS_DENSITY}),
    area: Optional[str] = _choice(None, "--area", AREAS, "Breast area in the prompt."),
    density_first: bool = typer.Option(False, "--density-first", help="Put density before area in the prompt."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Free prompt text (overrides the parts above)."),
    print_prompt: bool = typer.Option(False, "--print-prompt", help="Print the prompt and exit."),
    n: int = typer.Option(1, "--n", min=1, help="Number of images."),
    seed: int = Seed,
    steps: SamplingSteps = 24,
    guidance: float = typer.Option(5.0, "--guidance", min=0.0, help="Classifier-free guidance scale (MAM-E: 4-6)."),
    laterality: str = _choice("L", "--laterality", LATERALITIES, "L (as generated) or R (mirrored).", show_default=True),
    guidance_sweep: bool = typer.Option(False, "--guidance-sweep", help="Grid image: prompts x guidance 4..14."),
    sweep_values: str = typer.Option("4,6,8,10,12,14", "--sweep-values", help="Guidance values of the sweep."),
    resolution: Optional[int] = typer.Option(None, "--image-size", "--resolution", parser=VAE_SIDE,
                                             show_default="the model's: 512; tiny 128", help="Image side, a multiple of 8."),
    model: Optional[str] = typer.Option(None, "--model", metavar=MODEL_METAVAR, show_default="Likalto4/fusion_healthy",
                                        help="Text-to-image pipeline: hub id or folder (a `mame train` run)."),
    size: Size = ModelSize.full,
    random_weights: RandomWeights = False,
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (refused if not empty unless --overwrite).  [required unless --print-prompt]"),
    overwrite: Overwrite = False,
    as_json: bool = Json,
) -> None:
    """Generate mammograms from MAM-E prompts (greyscale PNGs + metadata.jsonl)."""
    size = size_value(size)
    from modise.synthesis.prompts import DENSITIES, build_prompt

    text = prompt if prompt else build_prompt(vendor, view, density, area, density_first)
    if print_prompt:
        typer.echo(text)
        raise typer.Exit(0)
    if out is None:
        from typer.core import _click

        raise _click.exceptions.MissingParameter(param_hint="'--out'", param_type="option")  # Click's wording
    try:
        guidances = [float(v) for v in sweep_values.split(",") if v.strip()]
    except ValueError:
        raise ModiseError(f"--sweep-values must be comma-separated numbers, not '{sweep_values}'.") from None
    from modise.outputs import check_output_dir, output_dir
    from modise.synthesis.metadata import write_metadata_jsonl
    from modise.synthesis.generate import generate_images, guidance_sweep as sweep
    from modise.synthesis.pipelines import load_text2img, native_resolution
    from modise.progress import denoising_progress

    check_output_dir(out, overwrite, [model])  # fail before loading a model
    check_disk_room(out, 1 if guidance_sweep else n, (resolution or 512) ** 2)  # 8-bit grey PNGs at most
    pipe = load_text2img(model, size=size, random_weights=random_weights, seed=seed)
    side = resolution or native_resolution(pipe)
    common = dict(
        steps=steps, laterality=laterality.upper(), resolution=side,
        model=f"random-{size}" if random_weights else (model or "Likalto4/fusion_healthy"),
        random_weights=random_weights, size=size if random_weights else None,
    )
    with output_dir(out, overwrite, [model]) as stage:
        if guidance_sweep:
            if prompt or density:
                prompts = [text]
            else:
                prompts = [build_prompt(vendor, view, d, area, density_first) for d in DENSITIES]
            with denoising_progress(len(prompts) * len(guidances) * steps, "guidance sweep") as cb:
                grid, cells = sweep(pipe, prompts, guidances, seed, steps, laterality, side, cb)
            grid.save(stage / "guidance_sweep.png")
            records = [dict(c, file_name="guidance_sweep.png", **common, **_concepts(c["prompt"])) for c in cells]
            files = ["guidance_sweep.png"]
        else:
            with denoising_progress(n * steps, "generating") as cb:
                images = generate_images(pipe, text, n, seed, steps, guidance, laterality, side, cb)
            records, files = [], []
            for i, im in enumerate(images):
                name = f"mame_{i:04d}_seed{seed + i}.png"
                im.save(stage / name)
                files.append(name)
                records.append(dict(file_name=name, prompt=text, seed=seed + i, guidance=guidance, **common,
                                    **_concepts(text)))
        write_metadata_jsonl(stage / "metadata.jsonl", records)
    summary = {"out": str(out), "prompt": text, "files": files, **_concepts(text)}
    if summary["concept_extrapolation"]:
        _warn(f"the prompt combines {summary['extrapolation']}: concept extrapolation, as on the MAM-E poster.")
    _report(summary, as_json, f"wrote {len(files)} image(s) to {out} (prompt: {text})")


def _concepts(prompt: str) -> dict:
    """Metadata fields saying whether ``prompt`` mixes concepts no MAM-E training caption held."""
    from modise.synthesis.prompts import extrapolation

    why = extrapolation(prompt)
    return {"concept_extrapolation": why is not None, "extrapolation": why}


def _run_box_stats(model: str | None, mode: str):
    """Whole mode with ``--model RUN``: the run's box_stats.json (from its training masks), if any."""
    from modise.synthesis.boxes import load_box_stats

    return load_box_stats(model) if mode == "whole" and model else None


def _read_mask(path: Path, shape: tuple[int, int]):
    import numpy as np

    from modise.data.imageio import read_image

    m = read_image(path).pixels >= 0.5
    if m.shape != shape:
        raise ModiseError(f"{path}: mask is {m.shape[1]}x{m.shape[0]} px but the image is {shape[1]}x{shape[0]} px.")
    if not m.any():
        raise ModiseError(f"{path}: the mask is empty.")
    return np.asarray(m, bool)


def inpaint(
    image: Path = typer.Option(..., "--image", help="Mammogram (PNG/JPEG/TIFF/DICOM)."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Lesion mask image (white = inpaint)."),
    auto_box: bool = typer.Option(False, "--auto-box", help="Draw a lesion box inside the breast."),
    n: int = typer.Option(1, "--n", min=1, help="Number of variants (seed+i; a new box each with --auto-box)."),
    seed: int = Seed,
    steps: SamplingSteps = 40,
    guidance: float = typer.Option(4.0, "--guidance", min=0.0, help="Guidance scale (MAM-E: 4)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", show_default="a mammogram with a lesion", help="Prompt."),
    mode: Optional[str] = Mode,
    crop: Optional[int] = CropSize,
    laterality: Optional[str] = _choice(None, "--laterality", LATERALITIES, "Breast side for --mode whole.",
                                        show_default="from DICOM, else guessed from the image"),
    model: Optional[str] = typer.Option(None, "--model", metavar=MODEL_METAVAR, show_default="Likalto4/vindr_lesion-inpainting",
                                        help=INPAINT_MODEL_HELP),
    size: Size = ModelSize.full,
    random_weights: RandomWeights = False,
    out: Path = Out,
    overwrite: Overwrite = False,
    as_json: bool = Json,
) -> None:
    """Inpaint a lesion into a mammogram; writes the result and the lesion mask PNGs."""
    size = size_value(size)
    if (mask is None) == (not auto_box):
        raise ModiseError("Give exactly one of --mask or --auto-box.")
    if mode == "whole" and crop is not None:
        raise typer.BadParameter("only --mode crop uses a window; leave it out with --mode whole.",
                                 param_hint="'--crop-size'")
    from PIL import Image

    from modise.data.imageio import read_image, to_uint8
    from modise.outputs import check_output_dir, output_dir
    from modise.synthesis.metadata import write_metadata_jsonl
    from modise.synthesis.inpaint import inpaint_lesion
    from modise.synthesis.pipelines import MAME_INPAINT, load_inpaint
    from modise.synthesis.prompts import INPAINT_PROMPT

    check_output_dir(out, overwrite, [image, mask, model])
    loaded = read_image(image)
    grey = to_uint8(loaded.pixels)
    check_disk_room(out, n, 2 * grey.size)  # result + lesion mask, 8-bit grey at most
    laterality = laterality or (loaded.meta.get("laterality") or None)
    lesion = _read_mask(mask, grey.shape) if mask is not None else None
    pipe = load_inpaint(model, size=size, random_weights=random_weights, seed=seed)
    mode = mode or ("crop" if crop else "whole")
    stats = _run_box_stats(model, mode)
    text = prompt or INPAINT_PROMPT
    from modise.progress import denoising_progress

    records, files = [], []
    with output_dir(out, overwrite, [image, mask, model]) as stage, denoising_progress(n * steps, "inpainting") as cb:
        for i in range(n):
            result, region = inpaint_lesion(
                pipe, grey, lesion, auto_box=auto_box, seed=seed + i, steps=steps, guidance=guidance,
                prompt=text, crop=crop, callback=cb, mode=mode, laterality=laterality, stats=stats,
            )
            name, mname = f"{image.stem}_inpainted_{i:03d}.png", f"{image.stem}_mask_{i:03d}.png"
            result.save(stage / name)
            Image.fromarray(region.astype("uint8") * 255).save(stage / mname)
            files += [name, mname]
            records.append(
                dict(file_name=name, mask_file=mname, source=str(image), prompt=text, seed=seed + i, steps=steps,
                     guidance=guidance, auto_box=auto_box, mode=mode, crop=crop,
                     random_weights=random_weights,
                     model=f"random-{size}" if random_weights else (model or MAME_INPAINT))
            )
        write_metadata_jsonl(stage / "metadata.jsonl", records)
    _report({"out": str(out), "files": files}, as_json, f"wrote {n} inpainted image(s) and mask(s) to {out}")


def augment(
    healthy: Path = typer.Option(..., "--healthy", help="Folder of healthy mammograms (PNG/JPEG/TIFF/DICOM)."),
    n: int = typer.Option(..., "--n", min=1, help="Number of synthetic lesion images."),
    data: Optional[Path] = typer.Option(None, "--data", help="Panoptic dataset to merge with (kept as it is)."),
    classes: Optional[list[str]] = typer.Option(
        None, "--classes", metavar="<class,..>", show_default="every class of --data", help="Lesion classes to draw from, a comma list or repeatable."),
    seed: int = Seed,
    steps: SamplingSteps = 40,
    guidance: float = typer.Option(4.0, "--guidance", min=0.0, help="Guidance scale (MAM-E: 4)."),
    mode: Optional[str] = Mode,
    crop: Optional[int] = CropSize,
    sigma: float = typer.Option(7.0, "--sigma", parser=positive_float, help="Pseudo-mask blur sigma (px)."),
    model: Optional[str] = typer.Option(None, "--model", metavar=MODEL_METAVAR, show_default="Likalto4/vindr_lesion-inpainting",
                                        help=INPAINT_MODEL_HELP),
    size: Size = ModelSize.full,
    random_weights: RandomWeights = False,
    out: Path = Out,
    overwrite: Overwrite = False,
    as_json: bool = Json,
) -> None:
    """Inpaint lesions into healthy mammograms and write a panoptic training dataset."""
    size = size_value(size)
    from modise.outputs import check_output_dir, output_dir
    from modise.synthesis.lesion_augment import augment_dataset, list_healthy
    from modise.synthesis.pipelines import load_inpaint
    from modise.progress import denoising_progress

    check_output_dir(out, overwrite, [healthy, data, model])
    files = list_healthy(healthy)
    if data is not None and not (data / "panoptic.json").is_file():
        raise ModiseError(f"{data / 'panoptic.json'}: not found; --data must be a canonical panoptic dataset.")
    names = [c.strip() for item in classes or [] for c in item.split(",") if c.strip()] or None
    pipe = load_inpaint(model, size=size, random_weights=random_weights, seed=seed)
    with output_dir(out, overwrite, [healthy, data, model]) as stage, denoising_progress(n * steps, "augmenting") as cb:
        result = augment_dataset(
            pipe, files, n, stage, data, names, seed, steps, guidance, crop, sigma, callback=cb, warn=_warn, mode=mode,
            stats=_run_box_stats(model, mode or ("crop" if crop else "whole")),
        )
    synth = sum(1 for im in result["images"] if im.get("synthetic"))
    summary = {"out": str(out), "images": len(result["images"]), "synthetic": synth}
    _report(summary, as_json, f"wrote {synth} synthetic + {len(result['images']) - synth} original image(s) to {out}")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``modise`` app."""
    app.command("generate")(generate)
    app.command("inpaint")(inpaint)
    app.command("augment")(augment)
    from modise.synthesis.mame_cli import mame_app

    app.add_typer(mame_app, name="mame")
