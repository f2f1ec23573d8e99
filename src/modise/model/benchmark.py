"""``inspect`` and ``benchmark`` reports: parts, feature maps, parameter counts, seconds per image, peak RSS."""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import torch

from modise.model.modise_model import MODISE


def _count(module: torch.nn.Module | None) -> dict[str, int]:
    if module is None:
        return {"total": 0, "trainable": 0}
    ps = list(module.parameters())
    return {"total": sum(p.numel() for p in ps), "trainable": sum(p.numel() for p in ps if p.requires_grad)}


def inspect_model(model: MODISE) -> dict[str, Any]:
    """Parts with parameter counts, the 4 feature maps (stride, channels) and totals."""
    from modise.model.diffusion_features import TAPS, DiffusionFeatureExtractor

    c = model.config
    parts = {name: {"class": type(m).__name__, **_count(m)} for name, m in model.named_children() if name != "criterion"}
    report: dict[str, Any] = {
        "preset": c.preset, "size": c.size, "random_weights": c.random_weights or c.size == "tiny",
        "diffusion": c.diffusion.model_id if not (c.random_weights or c.size == "tiny") else f"random {c.diffusion.kind}",
        "captioner": c.captioner.encoder, "class_head": c.class_head.kind,
        "num_classes": len(model.categories), "num_queries": c.num_queries, "hidden_dim": c.hidden_dim,
        "dec_layers": c.dec_layers, "parts": parts, "parameters": model.parameter_counts(),
    }
    if isinstance(model.backbone, DiffusionFeatureExtractor):
        report["taps"] = [{"module": f"{r}.{n}", "stride": s, "channels": ch}
                          for (r, n, s), ch in zip(TAPS, model.backbone.tap_channels)]
        report["feature_maps"] = [{"stride": s, "channels": c.diffusion.projection_dim} for s in (4, 8, 16, 32)]
    else:
        report["feature_maps"] = [{"stride": s, "channels": ch} for s, ch in zip((4, 8, 16, 32), model.backbone.channels)]
    return report


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


@torch.no_grad()
def backbone_only(model: MODISE, images: torch.Tensor) -> None:
    """The frozen reference: VAE encode + UNet forward (or the Swin backbone)."""
    from modise.model.diffusion_features import DiffusionFeatureExtractor

    bb = model.backbone
    if not isinstance(bb, DiffusionFeatureExtractor):
        bb(images)
        return
    lat = bb.vae.encode(images * 2 - 1).latent_dist.mean * bb.scaling_factor
    bb.unet(lat, torch.zeros(images.shape[0], dtype=torch.long), encoder_hidden_states=bb.empty_embeds.expand(images.shape[0], -1, -1))
    bb._store = [None] * len(bb._store)


def benchmark_model(model: MODISE, image_size: int = 512, repeats: int = 1, warmup: int = 1,
                    progress=None) -> dict[str, Any]:
    """Seconds per image end to end (``inference``) and of the frozen backbone alone, same process."""
    model.eval()
    x = torch.rand(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))

    def timed(fn, n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            fn()
            if progress:
                progress()
        return (time.perf_counter() - t) / n

    def e2e():
        model.inference(x)

    for _ in range(warmup):
        e2e()
        if progress:
            progress()
    diffusion = timed(lambda: backbone_only(model, x), repeats)
    total = timed(e2e, repeats)
    return {
        "preset": model.config.preset, "size": model.config.size, "image_size": image_size, "repeats": repeats,
        "threads": torch.get_num_threads(), "seconds_per_image": round(total, 4),
        "diffusion_seconds_per_image": round(diffusion, 4), "overhead_ratio": round(total / max(diffusion, 1e-9), 3),
        "peak_rss_mb": round(peak_rss_mb(), 1), "parameters": model.parameter_counts(),
    }
