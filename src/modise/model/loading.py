"""Loading frozen parts by hub id or local folder, or building them with seeded random weights.

Every pretrained load goes through :func:`pretrained_or_missing`, so an id that is neither a
local folder nor in the Hugging Face cache (offline) becomes one :class:`MissingWeightsError`
sentence instead of a stack trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch import nn

from modise.errors import MissingWeightsError

T = TypeVar("T")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch for a block without disturbing the caller's global RNG (random frozen parts are reproducible)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def pretrained_or_missing(model_id: str, load: Callable[[], T], what: str = "weights") -> T:
    """Run ``load``; turn "not found / offline" failures into :class:`MissingWeightsError`."""
    try:
        return load()
    except MissingWeightsError:
        raise
    except (OSError, ValueError, RuntimeError, FileNotFoundError) as e:
        raise MissingWeightsError(model_id, what) from e


def freeze(module: nn.Module) -> nn.Module:
    """requires_grad=False and eval mode; frozen parts never enter the optimiser or checkpoints."""
    module.requires_grad_(False)
    return module.eval()


def load_sd_parts(model_id: str, size: str, random_weights: bool, seed: int = 0):
    """(vae, unet, text_encoder) of a diffusers SD-1.x model id or folder, or random ``size`` parts."""
    from modise.model import stable_diffusion

    if random_weights or size == "tiny":
        with seeded(seed):
            return (
                stable_diffusion.build_random_vae(size, seed=seed),
                stable_diffusion.build_random_unet(size, seed=seed + 1),
                stable_diffusion.build_random_text_encoder(size, seed=seed + 2),
            )
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    def load():
        vae = AutoencoderKL.from_pretrained(model_id, subfolder="vae")
        unet = UNet2DConditionModel.from_pretrained(model_id, subfolder="unet")
        text = CLIPTextModel.from_pretrained(model_id, subfolder="text_encoder")
        return vae, unet, text

    return pretrained_or_missing(model_id, load, "the diffusion model")
