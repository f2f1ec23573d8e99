"""The settings of one ``modise mame train`` run, as ``modise train``'s ``TrainConfig`` holds its own.

Optimisation fields left ``None`` come from the recipe (:mod:`modise.synthesis.mame_recipe`);
:meth:`MameTrainConfig.resolved` fills them, and the resolved config goes to ``RUN/config.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TEXT2IMG_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
INPAINT_BASE = "stable-diffusion-v1-5/stable-diffusion-inpainting"
RECIPE_FIELDS = ("batch_size", "grad_accum", "max_steps", "lr", "weight_decay", "grad_clip")


class MameTrainConfig(BaseModel):
    """Everything a MAM-E fine-tune needs. Defaults: MAM-E's recipe on SD 1.5 (see ``mame_recipe``)."""

    model_config = ConfigDict(extra="forbid")

    data: str  # a folder from `modise mame prepare`
    base: str | None = None  # hub id or folder; None: SD 1.5 (or SD inpainting with ``inpainting``)
    size: Literal["full", "tiny"] = "full"  # tiny: the test-size random-weight pipeline
    random_weights: bool = False
    inpainting: bool = False  # the 9-channel inpainting UNet
    resolution: int | None = Field(None, ge=8, multiple_of=8)  # None: the base's native side (512)
    # optimisation: None = the recipe's; recipe None = mame (inpaint with ``inpainting``) for size full, else light
    recipe: Literal["mame", "light", "inpaint", "inpaint-mass"] | None = None
    batch_size: int | None = Field(None, ge=1)  # per device
    grad_accum: int | None = Field(None, ge=1)
    max_steps: int | None = Field(None, ge=1)  # optimiser steps; a resumed run counts on
    lr: float | None = Field(None, gt=0)  # None: 1e-6 full fine-tune, 1e-4 LoRA
    weight_decay: float | None = Field(None, ge=0)
    grad_clip: float | None = Field(None, ge=0)  # gradient-norm clip, 0 = off
    train_text_encoder: bool = True  # with LoRA: adapters on the text encoder too
    lora_rank: int = Field(0, ge=0)  # 0: full fine-tune
    seed: int = Field(0, ge=0)
    num_workers: int = Field(0, ge=0)  # DataLoader workers
    # hardware and bookkeeping
    accelerator: str = "auto"  # Lightning's: auto, cpu, gpu, cuda, mps
    devices: int | str = "auto"
    num_nodes: int = Field(1, ge=1)
    precision: str = "auto"  # bf16-mixed on a bf16 GPU, 32-true on the CPU (modise.precision)
    checkpoint_every: int = Field(500, ge=1)
    val_every: int = Field(500, ge=0)  # validation strip every N steps, 0 = never
    val_steps: int = Field(20, ge=1)  # sampling steps of the validation images

    def resolved(self) -> MameTrainConfig:
        """A copy with the recipe named and every optimisation field set (given values win)."""
        from modise.synthesis.mame_recipe import default_recipe, resolve_recipe

        name = self.recipe or default_recipe(self.size, self.inpainting)
        rec = resolve_recipe(name, lora=bool(self.lora_rank), **{k: getattr(self, k) for k in RECIPE_FIELDS})
        return self.model_copy(update={"recipe": name, **{k: getattr(rec, k) for k in RECIPE_FIELDS}})

    def base_name(self) -> str:
        """What the run starts from: ``random-<size>``, the given base, or the default SD 1.5 pipeline."""
        if self.random_weights:
            return f"random-{self.size}"
        return self.base or (INPAINT_BASE if self.inpainting else TEXT2IMG_BASE)

    def run_config(self, **facts: Any) -> dict[str, Any]:
        """``RUN/config.yaml``: what was trained at the top level, the resolved optimisation under ``training``.

        Same shape as ``modise train``'s (kind and model at the top, a ``training`` block);
        ``facts`` (resolution, images, precision, world size, ...) are what the run measured.
        """
        cfg = self.resolved()
        top = {"kind": "mame", "base": cfg.base_name(), "size": cfg.size, "random_weights": cfg.random_weights,
               "inpainting": cfg.inpainting, "data": str(Path(cfg.data).resolve())}
        training = cfg.model_dump(exclude={"data", "base", "size", "random_weights", "inpainting"})
        for key in ("resolution", "images"):
            if key in facts:
                top[key] = facts.pop(key)
        return {**top, "training": {**training, **facts}}
