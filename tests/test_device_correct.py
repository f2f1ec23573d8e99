"""Device correctness: modise code makes no tensor on the default (CPU) device inside forward, loss,
inference or the benchmark's timed paths.

A ``TorchFunctionMode`` watches every tensor factory (``torch.zeros``, ``randn``, ``arange``,
``as_tensor``, ...): one called from modise's own code without ``device=`` is a tensor that would be
born on the CPU while the model lives on a GPU (the benchmark's timesteps, a per-call noise
generator), so the test fails and names the line. Library internals are not ours to fix (e.g.
transformers' Hungarian matcher returns CPU index tensors by design) and are let through.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

import modise
from modise.model import build_model
from modise.model.benchmark import benchmark_model

MODISE_DIR = str(Path(modise.__file__).resolve().parent)
TORCH_DIR = str(Path(torch.__file__).resolve().parent)


class NoDeviceLessTensors(TorchFunctionMode):
    """Records factory calls without ``device=`` whose caller (first frame outside torch) is modise."""

    def __init__(self, roots: tuple[str, ...] = (MODISE_DIR,)) -> None:
        super().__init__()
        self.roots = roots
        self.violations: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _device_constructors() and kwargs.get("device") is None:
            caller = next(f for f in reversed(traceback.extract_stack()[:-1]) if not f.filename.startswith(TORCH_DIR))
            if str(Path(caller.filename).resolve()).startswith(self.roots):
                self.violations.append(f"{caller.filename}:{caller.lineno}: {caller.line}")
        return func(*args, **kwargs)


def _targets(b: int, size: int):
    out = []
    for i in range(b):
        m = torch.zeros(1, size, size)
        m[0, 20 + 10 * i : 60 + 10 * i, 30:70] = 1
        out.append({"labels": torch.tensor([i % 2]), "masks": m})
    return out


def _old_benchmark_timesteps(images: torch.Tensor) -> torch.Tensor:
    return torch.zeros(images.shape[0], dtype=torch.long)  # a tensor made on the default device inside a forward


def test_the_trap_names_a_device_less_tensor():
    x = torch.rand(2, 3, 8, 8)
    with NoDeviceLessTensors(roots=(str(Path(__file__).resolve().parent),)) as trap:
        _old_benchmark_timesteps(x)
        torch.zeros(2, dtype=torch.long, device=x.device)  # the fix
    assert len(trap.violations) == 1 and "torch.zeros(images.shape[0], dtype=torch.long)" in trap.violations[0]


@pytest.mark.parametrize("preset", ["m-odise", "m2f-swinl"])
def test_forward_loss_and_inference_create_no_device_less_tensor(preset):
    model = build_model(preset, "tiny")
    x, targets = torch.rand(2, 3, 128, 128), _targets(2, 128)
    with NoDeviceLessTensors() as trap:
        model.train()
        losses = model.loss(model(x), targets)
        losses["loss"].backward()
        model.eval()
        results = model.inference(x[:1, :, :96, :112])  # padding + cropping path
    assert trap.violations == []
    assert torch.isfinite(losses["loss"]) and results[0]["sem_seg"].shape[-2:] == (96, 112)


def test_benchmark_stage_timing_creates_no_device_less_tensor():
    model = build_model("m-odise", "tiny")
    with NoDeviceLessTensors() as trap:
        res = benchmark_model(model, image_size=64, warmup=0, min_repeats=1, max_repeats=1)
        train = benchmark_model(model, image_size=64, batch_size=2, train=True, warmup=0, min_repeats=1, max_repeats=1)
    assert trap.violations == []
    assert res["stages"]["unet"]["seconds_per_image"] > 0 and train["images_per_second"] > 0
