"""``modise train``: one run (one held-out fold) of a Table-1 preset on Lightning."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modise.errors import ModiseError

CKPT_DIR, LAST_CKPT, MODEL_DIR = "checkpoints", "last.ckpt", "model"
CONFIG_YAML, METRICS_JSON = "config.yaml", "metrics.json"


class TrainConfig(BaseModel):
    """Everything a run needs; written (resolved) to ``RUN/config.yaml``. Defaults: the ODISE recipe."""

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
    max_steps: int = 10000
    max_epochs: int | None = None
    batch_size: int = 2
    accumulate: int = 1
    image_size: int | None = None  # LSJ crop; default 512 (full) / 128 (tiny)
    min_scale: float = 0.1
    max_scale: float = 2.0
    intensity_jitter: bool = True
    num_workers: int = 0
    seed: int = 0
    # hardware
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # bf16-mixed on GPU, 32-true on CPU
    checkpoint_every: int = 100
    time_budget_s: float | None = None  # cut max_steps to fit this many seconds of training
    # inference thresholds: None = the preset's (model config ``inference:``); set values are written there
    object_mask_threshold: float | None = None
    overlap_threshold: float | None = None

    def resolved_image_size(self) -> int:
        size = self.image_size or (512 if self.size == "full" else 128)
        if size % 32:
            raise ModiseError(f"--image-size must be a multiple of 32, not {size}.")
        return size


def is_global_zero() -> bool:
    """Rank 0 before Lightning starts (its DDP launcher re-runs the command with these set)."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def _precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    import torch

    use_gpu = cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if use_gpu and torch.cuda.is_bf16_supported() else "32-true"


def _strategy(cfg: TrainConfig):
    if cfg.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        # some heads (e.g. the void embedding on a batch without lesions) get no gradient on a step
        return DDPStrategy(find_unused_parameters=True)
    return cfg.strategy


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> Path | None:
    """Check/clear ``out``; return the checkpoint to resume from (``None`` for a fresh run)."""
    last = out / CKPT_DIR / LAST_CKPT
    if resume:
        if last.is_file():
            return last
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise ModiseError(f"Cannot resume: '{last}' does not exist (pass --overwrite to start '{out}' again).")
    if not is_global_zero():
        return None
    from modise.outputs import check_output_dir

    check_output_dir(out, overwrite)
    if out.is_dir() and overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return None


def write_yaml(path: Path, obj: Any) -> None:
    import yaml

    from modise.outputs import _json_default, write_bytes_atomic
    import json

    plain = json.loads(json.dumps(obj, default=_json_default))
    write_bytes_atomic(path, yaml.safe_dump(plain, sort_keys=False).encode())


def build_trainer(cfg: TrainConfig, out: Path, callbacks: list | None = None, progress: bool = True):
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from .progress import StepProgressBar

    ckpt = ModelCheckpoint(
        dirpath=out / CKPT_DIR, filename="step{step:07d}", auto_insert_metric_name=False,
        save_last=True, save_top_k=0, every_n_train_steps=max(1, cfg.checkpoint_every),
    )
    cbs = [ckpt, LearningRateMonitor(logging_interval="step"), *(callbacks or [])]
    if progress:
        cbs.append(StepProgressBar())  # on stderr: stdout is for results
    return L.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=_strategy(cfg),
        precision=_precision(cfg),
        max_steps=cfg.max_steps,
        max_epochs=cfg.max_epochs if cfg.max_epochs is not None else -1,
        accumulate_grad_batches=cfg.accumulate,
        gradient_clip_val=cfg.grad_clip if cfg.grad_clip > 0 else None,
        gradient_clip_algorithm="norm",
        # one version_N folder per (re)start, so a resumed run keeps its earlier curve
        logger=[TensorBoardLogger(out, name="logs"), CSVLogger(out, name="logs")],
        callbacks=cbs,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=1,
        default_root_dir=out,
    )


def train(
    cfg: TrainConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False, callbacks: list | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train ``cfg`` into run folder ``out``; return the validation metrics (empty without a held-out fold)."""
    from .progress import quiet_lightning

    out = Path(out)
    ckpt_path = prepare_run_dir(out, resume, overwrite)
    with quiet_lightning():
        return _train(cfg, out, ckpt_path, callbacks, progress)


def _train(cfg: TrainConfig, out: Path, ckpt_path: Path | None, callbacks: list | None, progress: bool) -> dict[str, Any]:
    import lightning as L

    from modise.model import build_model

    from .datamodule import PanopticDataModule
    from .lightning_module import ModiseLightning

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    size = cfg.resolved_image_size()
    dm = PanopticDataModule(
        cfg.data, cfg.fold, image_size=size, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
        min_scale=cfg.min_scale, max_scale=cfg.max_scale, intensity=cfg.intensity_jitter, seed=cfg.seed,
    )
    from modise.data.dataset import load_categories

    categories = load_categories(cfg.data)
    overrides = dict(cfg.model_overrides or {})
    thresholds = {k: getattr(cfg, k) for k in ("object_mask_threshold", "overlap_threshold") if getattr(cfg, k) is not None}
    if thresholds:  # the model config saved with the weights owns the inference thresholds
        overrides["inference"] = {**overrides.get("inference", {}), **thresholds}
    model = build_model(cfg.preset, cfg.size, random_weights=cfg.random_weights, categories=categories, overrides=overrides or None)
    module = ModiseLightning(model, cfg.lr, cfg.weight_decay, cfg.max_steps, cfg.warmup_steps, cfg.milestones)
    callbacks = list(callbacks or [])
    if cfg.time_budget_s:
        from .lightning_module import TimeBudget

        callbacks.append(TimeBudget(cfg.time_budget_s))
    trainer = build_trainer(cfg, out, callbacks, progress)
    if trainer.is_global_zero:
        write_yaml(out / CONFIG_YAML, run_config(cfg, model, categories))
    t0 = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None)
    trainer.save_checkpoint(out / CKPT_DIR / LAST_CKPT, weights_only=False)  # resumable: optimiser + loops
    metrics: dict[str, Any] = {}
    if trainer.is_global_zero:
        from modise.outputs import output_dir, write_json_atomic

        with output_dir(out / MODEL_DIR, overwrite=True) as stage:
            model.save_pretrained(stage)
        if dm.val_ids:
            from modise.engine.prediction.predictor import Predictor

            predictor = Predictor(model.eval(), categories, size, cfg.object_mask_threshold, cfg.overlap_threshold, device=module.device)
            metrics = predictor.evaluate_dataset(cfg.data, dm.val_ids, progress=progress)
        metrics["train"] = {"global_step": trainer.global_step, "seconds": round(time.time() - t0, 1), "fold": cfg.fold}
        write_json_atomic(out / METRICS_JSON, metrics)
    return metrics


def run_config(cfg: TrainConfig, model, categories) -> dict[str, Any]:
    """The resolved config of a run: preset at top level, then model, training and data."""
    mcfg = model.config.model_dump() if hasattr(model.config, "model_dump") else dict(model.config)
    training = cfg.model_dump(exclude={"preset", "size", "data", "fold", "random_weights", "model_overrides"})
    training["image_size"] = cfg.resolved_image_size()
    return {
        "preset": cfg.preset,
        "size": cfg.size,
        "random_weights": cfg.random_weights,
        "data": str(Path(cfg.data).resolve()),
        "fold": cfg.fold,
        "categories": [c.to_json() for c in categories],
        "model": mcfg,
        "model_overrides": cfg.model_overrides,
        "training": training,
    }


def load_run_config(run: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(run) / CONFIG_YAML
    if not path.is_file():
        raise ModiseError(f"'{run}' is not a training run: {path} is missing.")
    return yaml.safe_load(path.read_text())
