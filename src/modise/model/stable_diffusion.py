"""Stable Diffusion 1.x parts shared by M-ODISE's feature extractor and MAM-E synthesis.

Full-size configs are SD 1.5's (what MAM-E fine-tuned), so every architecture can be
built with random weights offline. Tiny configs keep the *topology* the feature taps
rely on (4 UNet up-blocks of 3 resnets, 4 VAE levels of 2/3 resnets) at a few thousand
channels in total, so tests and the demo run on a CPU in seconds.

The CLIP tokenizer is rebuilt from the BPE merges that ``open_clip`` ships, so no
tokenizer download is ever needed.
"""

from __future__ import annotations

import gzip
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

SD15_UNET: dict[str, Any] = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
)
SD15_VAE: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    sample_size=512,
    norm_num_groups=32,
    scaling_factor=0.18215,
)
SD15_TEXT: dict[str, Any] = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
)

TINY_UNET: dict[str, Any] = dict(
    SD15_UNET,
    sample_size=16,
    block_out_channels=(32, 32, 64, 64),
    cross_attention_dim=32,
    attention_head_dim=4,
    norm_num_groups=8,
)
TINY_VAE: dict[str, Any] = dict(SD15_VAE, block_out_channels=(16, 32, 32, 32), sample_size=128, norm_num_groups=8)
TINY_TEXT: dict[str, Any] = dict(
    SD15_TEXT, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, projection_dim=32
)

# SD's training schedule (ODISE's t=0 noise uses it too).
SD_SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
)


def configs(size: str, inpainting: bool = False) -> dict[str, dict[str, Any]]:
    """Architecture configs for ``size`` in {"full", "tiny"}; inpainting UNets take 9 channels."""
    if size not in ("full", "tiny"):
        raise ValueError(f"size must be 'full' or 'tiny', not {size!r}")
    unet = dict(SD15_UNET if size == "full" else TINY_UNET)
    if inpainting:
        unet["in_channels"] = 9
    return {
        "unet": unet,
        "vae": dict(SD15_VAE if size == "full" else TINY_VAE),
        "text_encoder": dict(SD15_TEXT if size == "full" else TINY_TEXT),
    }


def build_random_unet(size: str, inpainting: bool = False, seed: int = 0):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**configs(size, inpainting)["unet"])


def build_random_vae(size: str, seed: int = 0):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**configs(size)["vae"])


def build_random_text_encoder(size: str, seed: int = 0):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(**configs(size)["text_encoder"]))


def build_scheduler(kind: str = "ddpm"):
    """SD's noise schedule as a diffusers scheduler (``ddpm`` for training, ``dpm`` for sampling)."""
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    cls = {"ddpm": DDPMScheduler, "dpm": DPMSolverMultistepScheduler}[kind]
    return cls(**SD_SCHEDULER, steps_offset=1)  # steps_offset=1 is what SD 1.5 ships


def _cache_dir() -> Path:
    root = Path(os.environ.get("MODISE_CACHE", Path.home() / ".cache" / "modise"))
    return root / "clip_tokenizer"


@lru_cache(maxsize=1)
def offline_clip_tokenizer():
    """The CLIP BPE tokenizer (49408 tokens, 77 context) built from open_clip's bundled merges."""
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    out = _cache_dir()
    vocab_file, merges_file = out / "vocab.json", out / "merges.txt"
    if not (vocab_file.is_file() and merges_file.is_file()):
        bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
        merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
        pairs = [tuple(m.split()) for m in merges]
        vocab = list(bytes_to_unicode().values())
        vocab = vocab + [v + "</w>" for v in vocab] + ["".join(p) for p in pairs] + ["<|startoftext|>", "<|endoftext|>"]
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".vocab.{os.getpid()}"
        tmp.write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
        os.replace(tmp, vocab_file)
        tmp = out / f".merges.{os.getpid()}"
        tmp.write_text("#version: 0.2\n" + "\n".join(" ".join(p) for p in pairs) + "\n")
        os.replace(tmp, merges_file)
    return CLIPTokenizer(str(vocab_file), str(merges_file), pad_token="<|endoftext|>", model_max_length=77)
