"""``inspect`` and ``benchmark`` reports: parts, feature maps, parameter counts, seconds per stage, peak memory.

Stage times come from forward hooks on the real model's parts during the real ``inference`` (or
training step), never from a re-implementation: captioner, VAE encode, UNet, decoder taps,
projection, mask generator, class head, and at inference the CLIP ensemble (it runs after the
forward, on its masks); postprocess = ``inference`` minus the forward and the ensemble.

The reference of the ratio is the frozen diffusion forward of the *same* runs: every pass of the frozen
diffusion model the features need, VAE encode + UNet + the VAE decoder up to its last tap (ODISE
decodes the clean latent for its decoder features, ldm.py:606, and runs the whole decoder), or the
frozen Swin. The partial decode is frozen work the model's own parts cannot shrink (on the CPU it
is ~0.27x of VAE encode + UNet at 512²); counted as overhead, it mixed frozen work into what the
model adds. The ratio to VAE encode + UNet alone is reported beside it (``ratio_to_encode_unet``).
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from modise.errors import ModiseError
from modise.model.modise_model import MODISE

STAGES = ("captioner", "vae_encode", "unet", "decoder_taps", "backbone", "projection", "mask_generator",
          "class_head", "clip_ensemble", "postprocess")
FROZEN_FORWARD = ("vae_encode", "unet", "decoder_taps", "backbone")  # the ratio's reference (module docstring)
ENCODE_UNET = ("vae_encode", "unet", "backbone")


def _count(module: torch.nn.Module | None) -> dict[str, int]:
    if module is None:
        return {"total": 0, "trainable": 0}
    ps = list(module.parameters())
    return {"total": sum(p.numel() for p in ps), "trainable": sum(p.numel() for p in ps if p.requires_grad)}


def inspect_model(model: MODISE) -> dict[str, Any]:
    """Parts (and the backbone's own parts) with total / trainable parameter counts, the 4 feature maps
    (stride, channels), the inference thresholds, the optimiser settings and totals."""
    c = model.config
    parts = {}
    for name, m in model.named_children():
        if name == "criterion":
            continue
        parts[name] = {"class": type(m).__name__, **_count(m)}
        if name == "backbone":
            parts.update({f"backbone.{n}": {"class": type(sub).__name__, **_count(sub)}
                          for n, sub in m.named_children()})
    report: dict[str, Any] = {
        "preset": c.preset, "size": c.size, "random_weights": c.random_weights or c.size == "tiny",
        "diffusion": c.diffusion.model_id if not (c.random_weights or c.size == "tiny") else f"random {c.diffusion.kind}",
        "captioner": c.captioner.encoder, "class_head": c.class_head.kind,
        "num_classes": len(model.categories), "num_queries": c.num_queries, "hidden_dim": c.hidden_dim,
        "dec_layers": c.dec_layers, "parts": parts, "parameters": model.parameter_counts(),
        "diffusion_model_id": c.diffusion.model_id, "size_divisibility": c.size_divisibility,
        "clip_towers": _clip_towers(model),
        "inference": c.inference.model_dump(), "optimizer": c.optimizer.model_dump(),
    }
    report.update(model.backbone.describe())  # feature maps (+ taps and windows for diffusion backbones)
    return report


def _clip_towers(model: MODISE) -> list[dict[str, Any]]:
    """The open_clip models the model holds (captioner / class head / ensemble share one per id): id,
    the towers' MLP activation and whether the weights ask for QuickGELU (OpenAI's)."""
    from modise.model.image_encoders import tower_activation, uses_quick_gelu

    c, out = model.config, []
    for part, kind, model_id in (("captioner", c.captioner.encoder, c.captioner.model_id),
                                 ("class_head", c.class_head.kind, c.class_head.model_id)):
        if kind in ("none", "linear"):
            continue
        tower = model.captioner.image_encoder.visual if part == "captioner" else model.extras["clip_model"]  # text + image
        out.append({"part": part, "kind": kind, "model_id": model_id, "activation": tower_activation(tower),
                    "weights_need_quick_gelu": kind == "clip" and uses_quick_gelu(model_id)})
    return out


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def resolve_device(device: str) -> torch.device:
    """``auto`` (cuda when PyTorch sees a GPU, else cpu) | ``cpu`` | ``cuda`` (``cuda:N``); asking for CUDA without one is one sentence."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModiseError(f"--device {device}: PyTorch sees no CUDA GPU on this machine; use --device cpu.")
    if dev.type not in ("cpu", "cuda"):
        raise ModiseError(f"--device {device}: choose cpu or cuda.")
    return dev


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageTimer:
    """Forward pre/post hooks on a model's parts that add up wall seconds per stage (CUDA synchronised)."""

    def __init__(self, model: MODISE, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        parts: dict[str, nn.Module | None] = {"captioner": model.captioner, **model.backbone.stage_modules(),
                                              "mask_generator": model.mask_generator, "class_head": model.class_head,
                                              "forward": model}
        if "clip_ensemble" in model.extras:  # inference only, after the forward (MODISE.inference)
            parts["clip_ensemble"] = model.extras["clip_ensemble"]
        self._handles = []
        for name, module in parts.items():
            if module is not None:
                self._handles.append(module.register_forward_pre_hook(self._start(name)))
                self._handles.append(module.register_forward_hook(self._stop(name)))
        self._t0: dict[str, float] = {}

    def _start(self, name: str) -> Callable:
        def hook(module, args):
            _sync(self.device)
            self._t0[name] = time.perf_counter()

        return hook

    def _stop(self, name: str) -> Callable:
        def hook(module, args, output):
            _sync(self.device)
            self.seconds[name] += time.perf_counter() - self._t0.pop(name)

        return hook

    def reset(self) -> None:
        self.seconds = defaultdict(float)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _runs(fn: Callable[[], dict[str, float]], warmup: int, min_repeats: int, max_repeats: int, tolerance: float,
          max_seconds: float, progress: Callable[[], None] | None) -> tuple[list[dict[str, float]], bool]:
    """Warm up, then repeat until the last ``min_repeats`` totals lie within ``tolerance`` of their median."""
    for _ in range(warmup):
        fn()
        if progress:
            progress()
    runs: list[dict[str, float]] = []
    start = time.perf_counter()
    while True:
        runs.append(fn())
        if progress:
            progress()
        last = [r["total"] for r in runs[-min_repeats:]]
        stable = len(last) >= min_repeats and (max(last) - min(last)) <= tolerance * statistics.median(last)
        if stable or len(runs) >= max_repeats or time.perf_counter() - start > max_seconds:
            return runs[-min_repeats:] if stable else runs, stable


def _summary(runs: list[dict[str, float]], per: int) -> dict[str, Any]:
    """Stages of the run with the median total (so parts never exceed their whole) + spread over runs."""
    mid = sorted(runs, key=lambda r: r["total"])[len(runs) // 2]
    keys = [k for k in ("total", "forward", *STAGES, "other", "backward_and_step") if k in mid]
    return {k: {"seconds_per_image": round(mid[k] / per, 5), "min": round(min(r[k] for r in runs) / per, 5),
                "max": round(max(r[k] for r in runs) / per, 5)} for k in keys}


@contextlib.contextmanager
def _timing(model: MODISE, device: torch.device) -> Iterator[StageTimer]:
    timer = StageTimer(model, device)
    try:
        yield timer
    finally:
        timer.remove()


def _run_record(timer: StageTimer, total: float, train: bool) -> dict[str, float]:
    """One run's seconds: hooked stages, the rest of the forward (``other``: windows, resizes, stitching)
    and what follows the forward (``clip_ensemble`` and ``postprocess`` at inference,
    ``backward_and_step`` in training)."""
    s = timer.seconds
    after = {k: s[k] for k in ("clip_ensemble",) if k in s}
    rec = {k: s[k] for k in STAGES if k in s and k not in after}
    forward = s.get("forward", 0.0)
    rec["other"] = max(forward - sum(rec.values()), 0.0)
    rec.update(after)
    rec["backward_and_step" if train else "postprocess"] = max(total - forward - sum(after.values()), 0.0)
    rec["total"], rec["forward"] = total, forward
    return rec


def _synthetic_targets(b: int, size: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    targets = []
    for i in range(b):
        m = torch.zeros(1, size, size, device=device)
        m[0, size // 4 : size // 2, size // 4 + i % 4 : size // 2 + i % 4] = 1
        targets.append({"labels": torch.zeros(1, dtype=torch.long, device=device), "masks": m})
    return targets


def benchmark_model(model: MODISE, image_size: int = 512, batch_size: int = 1, device: str = "cpu",
                    precision: str = "fp32", train: bool = False, warmup: int = 1, min_repeats: int = 3,
                    max_repeats: int = 10, tolerance: float = 0.1, max_seconds: float = 300.0,
                    progress: Callable[[], None] | None = None) -> dict[str, Any]:
    """Seconds per image per stage (``inference``, or a training step with ``train``), the ratio of the
    whole to the frozen diffusion forward (VAE encode + UNet + decoder taps; also to VAE encode + UNet
    alone) and peak memory. Repeats until stable (spread shown)."""
    if precision not in ("fp32", "bf16"):
        raise ModiseError(f"--precision {precision}: choose fp32 or bf16.")
    dev = resolve_device(device)
    model.to(dev).set_frozen_precision(precision)
    x = torch.rand(batch_size, 3, image_size, image_size, generator=torch.Generator(dev).manual_seed(0), device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    opt = targets = None
    if train:
        model.train()
        opt = torch.optim.AdamW(list(model.trainable_parameters()), lr=1e-5)
        targets = _synthetic_targets(batch_size, image_size, dev)
    else:
        model.eval()

    with _timing(model, dev) as timer:
        def once() -> dict[str, float]:
            timer.reset()
            _sync(dev)
            t = time.perf_counter()
            with _autocast(dev, precision):
                if train:
                    opt.zero_grad(set_to_none=True)
                    loss = model.loss(model(x), targets)["loss"]
            if train:
                loss.backward()
                opt.step()
            else:
                with _autocast(dev, precision):
                    model.inference(x)
            _sync(dev)
            return _run_record(timer, time.perf_counter() - t, train)

        runs, stable = _runs(once, warmup, min_repeats, max_repeats, tolerance, max_seconds, progress)
    stages = _summary(runs, batch_size)
    total = stages["total"]["seconds_per_image"]
    frozen = sum(stages[k]["seconds_per_image"] for k in FROZEN_FORWARD if k in stages)
    encode_unet = sum(stages[k]["seconds_per_image"] for k in ENCODE_UNET if k in stages)
    res: dict[str, Any] = {
        "preset": model.config.preset, "size": model.config.size, "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "precision": precision, "mode": "train" if train else "inference", "image_size": image_size,
        "batch_size": batch_size, "threads": torch.get_num_threads(), "repeats": len(runs), "stable": stable,
        "seconds_per_image": total, "diffusion_seconds_per_image": round(frozen, 5),
        "overhead_ratio": round(total / max(frozen, 1e-9), 3),
        "encode_unet_seconds_per_image": round(encode_unet, 5), "ratio_to_encode_unet": round(total / max(encode_unet, 1e-9), 3),
        "stages": stages,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if dev.type == "cuda" else None,
        "parameters": model.parameter_counts(),
    }
    if train:
        res["images_per_second"] = round(1.0 / max(total, 1e-9), 2)
    return res
