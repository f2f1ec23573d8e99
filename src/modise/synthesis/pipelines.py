"""Load MAM-E pipelines (text-to-image and inpainting) by hub id, local folder, or as
tiny / full random-weight architectures for offline use.

Every pipeline comes back with the safety checker off (it flags mammograms) and
DPMSolverMultistepScheduler, MAM-E's sampler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modise.errors import MissingWeightsError, ModiseError

MAME_TEXT2IMG = "Likalto4/fusion_healthy"
MAME_INPAINT = "Likalto4/vindr_lesion-inpainting"


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def sd_tokenizer():
    """The offline CLIP tokenizer (SD's 77-token limit); pipelines only read it."""
    from modise.model.stable_diffusion import offline_clip_tokenizer

    return offline_clip_tokenizer()


def dpm_scheduler(config: Any = None):
    """DPMSolverMultistepScheduler on SD's schedule (or on a loaded pipeline's scheduler config)."""
    from diffusers import DPMSolverMultistepScheduler

    from modise.model.stable_diffusion import build_scheduler

    # steps_offset=1 is what SD 1.5 ships; diffusers warns on the 0 default.
    return DPMSolverMultistepScheduler.from_config(config or build_scheduler("dpm").config, steps_offset=1)


def build_random_pipeline(size: str = "tiny", inpainting: bool = False, seed: int = 0):
    """An SD-1.5-shaped pipeline (``size`` full|tiny) with random weights, built offline."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    from modise.model import stable_diffusion

    cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    return cls(
        vae=stable_diffusion.build_random_vae(size, seed=seed),
        text_encoder=stable_diffusion.build_random_text_encoder(size, seed=seed),
        tokenizer=sd_tokenizer(),
        unet=stable_diffusion.build_random_unet(size, inpainting=inpainting, seed=seed),
        scheduler=dpm_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _from_pretrained(cls, model: str, dtype):
    from modise.progress import no_loading_bars

    with no_loading_bars():
        return _load_pretrained(cls, model, dtype)


def _load_pretrained(cls, model: str, dtype):
    kwargs = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False, dtype=dtype)
    path = Path(model).expanduser()
    if path.is_dir():
        try:
            return cls.from_pretrained(str(path), **kwargs)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModiseError(f"{path}: not a loadable diffusers pipeline folder ({type(e).__name__}: {e}).") from None
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ModiseError(f"Model '{model}' is neither a pipeline folder nor a Hugging Face id (owner/name).")
    try:
        return cls.from_pretrained(model, **kwargs)
    except (OSError, ValueError) as e:  # offline / not cached: huggingface_hub raises OSError subclasses
        raise MissingWeightsError(model, "the diffusion pipeline") from e


def _load(model: str | None, size: str, random_weights: bool, seed: int, inpainting: bool, device: str | None):
    import torch
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    device = device or default_device()
    if random_weights:
        pipe = build_random_pipeline(size, inpainting=inpainting, seed=seed)
    else:
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
        pipe = _from_pretrained(cls, model or (MAME_INPAINT if inpainting else MAME_TEXT2IMG), dtype)
        want = 9 if inpainting else 4
        if pipe.unet.config.in_channels != want:
            kind = "an inpainting" if inpainting else "a text-to-image"
            raise ModiseError(
                f"Model '{model}' has a {pipe.unet.config.in_channels}-channel UNet, not {kind} ({want}-channel) one."
            )
        pipe.scheduler = dpm_scheduler(pipe.scheduler.config)
        pipe.safety_checker = None
    pipe.set_progress_bar_config(disable=True)  # our own rich progress covers all images
    return pipe.to(device)


def load_text2img(
    model: str | None = None, size: str = "full", random_weights: bool = False, seed: int = 0, device: str | None = None
):
    """MAM-E text-to-image pipeline: hub id or folder (default ``Likalto4/fusion_healthy``), or random weights."""
    return _load(model, size, random_weights, seed, inpainting=False, device=device)


def load_inpaint(
    model: str | None = None, size: str = "full", random_weights: bool = False, seed: int = 0, device: str | None = None
):
    """MAM-E inpainting pipeline (9-channel UNet; default ``Likalto4/vindr_lesion-inpainting``)."""
    return _load(model, size, random_weights, seed, inpainting=True, device=device)


def native_resolution(pipe) -> int:
    """The side the model was trained at: UNet sample size times the VAE's downscale (512 for SD 1.5)."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
