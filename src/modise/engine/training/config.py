"""``TrainConfig``: what one training run needs, and the record of it written to ``RUN/config.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# how a run runs, not what it computes: may change between a run and its resumption
HARDWARE = {"accelerator", "devices", "num_nodes", "strategy", "precision", "num_workers", "checkpoint_every"}
# run settings that are not options of `modise train` (the demo's time bound)
NOT_SETTINGS = {"time_limit_s"}
# what names the model rather than how it is trained: top-level keys of RUN/config.yaml
IDENTITY = ("preset", "size", "random_weights", "data", "fold", "model_overrides")


class TrainConfig(BaseModel):
    """Everything a run needs; written (resolved) to ``RUN/config.yaml``. Defaults: the ODISE recipe.

    Model settings (the inference thresholds included) are ``model_overrides`` of the preset; they are
    resolved once (:func:`~modise.engine.training.checks.check_train_config`) and saved with the weights.
    """

    model_config = ConfigDict(extra="forbid")

    preset: str = "m-odise"
    size: Literal["full", "tiny"] = "full"
    data: str
    fold: int | None = 0
    random_weights: bool = False
    model_overrides: dict[str, Any] = Field(default_factory=dict)
    # optimisation (ODISE: AdamW 1e-4, wd 0.05, x0.1 at ~89% and ~96%, clip); groups: the preset's optimizer:
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup_steps: int | None = None  # None: the preset's optimizer.warmup_fraction of the run (ODISE 500/184375)
    milestones: tuple[float, float] = (0.889, 0.963)
    grad_clip: float = 0.01
    # modise's recipe (the paper states none): batch 2 x 10k steps at lr 1e-4; ODISE: 64 x 92,188 (recipe.py)
    max_steps: int = 10000
    max_epochs: int | None = None
    batch_size: int = 2
    grad_accum: int = 1
    reference_batch: int | None = Field(None, ge=1)  # lr/max_steps are for this total batch: scale them (recipe.py)
    image_size: int | None = None  # LSJ crop; None = the preset's input_size (1024 full, as ODISE; 128 tiny)
    min_scale: float = 0.1
    max_scale: float = 2.0
    intensity_jitter: bool = False  # gamma/contrast/brightness: in neither ODISE nor Mask2Former
    num_workers: int | None = None  # None: 0 on a CPU (the model needs every core), up to 8 per GPU (datamodule.py)
    seed: int = 0
    # hardware
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # bf16-mixed on GPU, 32-true on CPU
    checkpoint_every: int = 100
    time_limit_s: float | None = None  # stop training after this many seconds (max_steps and the schedule stay)


def run_settings(cfg: TrainConfig, image_size: int) -> dict[str, Any]:
    """What a run computes, flat (identity + training settings): compared on ``--resume``."""
    training = cfg.model_dump(exclude={*IDENTITY, *HARDWARE, *NOT_SETTINGS})
    training["image_size"] = image_size
    return {**identity(cfg), **training}


def identity(cfg: TrainConfig) -> dict[str, Any]:
    """The top-level keys of ``RUN/config.yaml``: which preset, data and fold the run is."""
    return {"preset": cfg.preset, "size": cfg.size, "random_weights": cfg.random_weights,
            "data": str(Path(cfg.data).resolve()), "fold": cfg.fold, "model_overrides": cfg.model_overrides or {}}


def run_record(cfg: TrainConfig, image_size: int, categories: list, recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """``RUN/config.yaml``: the run's identity, ``model: model`` (the model folder, whose config.yaml is the
    resolved model config, as a diffusers ``model_index.json`` points at its components), categories,
    training settings (with the recipe: effective batch, lr, steps, epochs)."""
    from modise.runs import MODEL_DIR

    training = cfg.model_dump(exclude=set(IDENTITY))
    training["image_size"] = image_size
    if recipe is not None:
        training["recipe"] = recipe
    ident = identity(cfg)
    return {**{k: ident[k] for k in IDENTITY if k != "model_overrides"}, "categories": [c.to_json() for c in categories],
            "model": MODEL_DIR, "model_overrides": ident["model_overrides"], "training": training}
