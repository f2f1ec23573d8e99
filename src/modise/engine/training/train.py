"""``modise train``: one run (one held-out fold) of a Table-1 preset on Lightning."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modise.errors import ModiseError, TrainingInterrupted

from modise.engine.run_layout import CKPT_DIR, CONFIG_YAML, LAST_CKPT, METRICS_JSON, MODEL_DIR, load_run_config  # noqa: F401
# RUN/run.json: {"status": running | interrupted | failed | complete, "global_step", "max_steps", ...}
RUN_JSON = "run.json"
COMPLETE = "complete"


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
    num_workers: int = 0
    seed: int = 0
    # hardware
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # bf16-mixed on GPU, 32-true on CPU
    checkpoint_every: int = 100
    time_limit_s: float | None = None  # stop training after this many seconds (max_steps and the schedule stay)
    # inference thresholds: None = the preset's (model config ``inference:``); set values are written there
    object_mask_threshold: float | None = None
    overlap_threshold: float | None = None

    def resolved_image_size(self) -> int:
        """The LSJ crop; saved as the model's ``input_size``, the shortest edge it then predicts at."""
        from modise.model.config import load_preset

        size = self.image_size or load_preset(self.preset, self.size, self.model_overrides or None).input_size
        if size % 32:
            raise ModiseError(f"--image-size must be a multiple of 32, not {size}.")
        return size


def is_global_zero() -> bool:
    """Rank 0 before Lightning starts (its DDP launcher re-runs the command with these set)."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def _precision(cfg: TrainConfig) -> str:
    from .precision import resolve_precision

    return resolve_precision(cfg.precision, cfg.accelerator)


def _strategy(cfg: TrainConfig):
    if cfg.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        # some heads (e.g. the void embedding on a batch without lesions) get no gradient on a step
        return DDPStrategy(find_unused_parameters=True)
    return cfg.strategy


def prepare_run_dir(out: Path, resume: bool, overwrite: bool, inputs: list | tuple = ()) -> Path | None:
    """Check/clear ``out``; return the checkpoint to resume from (``None`` for a fresh run).

    ``--resume`` needs ``RUN/checkpoints/last.ckpt`` (a missing one is an error, never a silent
    fresh start); a fresh run needs an empty ``out``, a run that failed before its first checkpoint,
    or ``overwrite`` of a folder modise wrote.
    """
    from modise.outputs import check_output_dir, claim_output_dir, remove_output_dir

    last = out / CKPT_DIR / LAST_CKPT
    if resume:
        if last.is_file():
            return last
        if not out.exists():
            raise ModiseError(f"Cannot resume: '{out}' does not exist; start the run without --resume.")
        again = "with --overwrite instead of --resume" if any(out.iterdir()) else "without --resume"
        raise ModiseError(f"Cannot resume: '{last}' does not exist (nothing was saved); start the run again {again}.")
    if not is_global_zero():
        return None
    if not overwrite and not last.is_file() and (read_run_status(out) or {}).get("status") == "failed":
        overwrite = True  # a run that failed before saving a checkpoint holds nothing to keep
    check_output_dir(out, overwrite, inputs, hint="pass --resume to continue the run in it, or --overwrite to start it again")
    if overwrite:
        remove_output_dir(out, inputs)
    claim_output_dir(out, inputs)
    return None


def read_run_status(run: str | Path) -> dict[str, Any] | None:
    """``RUN/run.json`` (``status``, ``global_step``, ``max_steps``), or ``None`` for a folder without one."""
    try:
        return json.loads((Path(run) / RUN_JSON).read_text())
    except (OSError, ValueError):
        return None


def write_run_status(run: Path, status: str, **extra: Any) -> None:
    from modise.outputs import write_json_atomic

    write_json_atomic(run / RUN_JSON, {"status": status, **extra, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def require_complete_run(path: str | Path) -> None:
    """Raise unless ``path`` (a run or its ``model/``) finished training; plain model folders pass."""
    path = Path(path)
    run = path.parent if path.name == MODEL_DIR and (path.parent / CONFIG_YAML).is_file() else path
    st = read_run_status(run)
    if st is None or st.get("status") == COMPLETE:
        return
    status = st.get("status")
    where = f"{status} at step {st.get('global_step', '?')} of {st.get('max_steps', '?')}"
    if status == "running":
        where = f"still training, or killed, at step {st.get('global_step', '?')} of {st.get('max_steps', '?')}"
    raise ModiseError(
        f"'{run}' is an unfinished training run ({where}); finish it with the same `modise train` command "
        f"plus --resume (--out {run}) before using it."
    )


def write_yaml(path: Path, obj: Any) -> None:
    import yaml

    from modise.outputs import json_default, write_bytes_atomic
    import json

    plain = json.loads(json.dumps(obj, default=json_default))
    write_bytes_atomic(path, yaml.safe_dump(plain, sort_keys=False).encode())


def build_trainer(cfg: TrainConfig, out: Path, callbacks: list | None = None, progress: bool = True):
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from .lightning_console import StepProgressBar
    from .run_logs import run_loggers

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
        accumulate_grad_batches=cfg.grad_accum,
        gradient_clip_val=cfg.grad_clip if cfg.grad_clip > 0 else None,
        gradient_clip_algorithm="norm",
        # one logs/ folder: a resumed run appends to its curve (no version_N split)
        logger=run_loggers(out),
        callbacks=cbs,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=1,
        default_root_dir=out,
    )


def _checkpoint_on_exception(out: Path, max_steps: int):
    """:class:`SaveOnException` into ``RUN/checkpoints/last.ckpt`` that also keeps ``run.json``'s step at the
    last checkpoint (nothing is saved after a non-finite loss)."""
    from .interrupt import SaveOnException
    from .lightning_module import NonFiniteLoss

    class CheckpointOnException(SaveOnException):
        not_worth_saving = (NonFiniteLoss,)

        def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
            if trainer.is_global_zero:
                write_run_status(Path(trainer.default_root_dir), "running", global_step=trainer.global_step,
                                 max_steps=max_steps)

    return CheckpointOnException(out / CKPT_DIR / LAST_CKPT)


def train(
    cfg: TrainConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False, callbacks: list | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train ``cfg`` into run folder ``out``; return the validation metrics (empty without a held-out fold).

    ``RUN/run.json`` says whether the run is complete. On Ctrl-C or a failure during fit the
    last step is saved to ``RUN/checkpoints/last.ckpt`` and the message says to pass ``--resume``.
    """
    from .checks import check_resume, check_train_config
    from .lightning_console import quiet_lightning

    from .datamodule import split_fold
    from .recipe import recipe_line, recipe_record, scale_to_batch, trainer_world_size

    from modise.outputs import refuse_overlap

    out = Path(out)
    refuse_overlap(out, [cfg.data])  # --out inside --data (or the reverse) is the first thing to say
    size = check_train_config(cfg)  # a mistyped command stops here, before the run folder is touched
    if resume:
        check_resume(cfg, out, size)
    ckpt_path = prepare_run_dir(out, resume, overwrite, inputs=[cfg.data])
    with quiet_lightning():
        world_size = trainer_world_size(cfg)
        used = scale_to_batch(cfg, world_size)
        recipe = recipe_record(cfg, used, world_size, len(split_fold(cfg.data, cfg.fold)[0]))
        if progress and is_global_zero():
            print(recipe_line(recipe), file=sys.stderr)
        return _train(used, out, ckpt_path, callbacks, progress, recipe)


def _train(cfg: TrainConfig, out: Path, ckpt_path: Path | None, callbacks: list | None, progress: bool,
           recipe: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {"trainer": None, "guard": _checkpoint_on_exception(out, cfg.max_steps)}
    rank0 = is_global_zero()
    start = int((read_run_status(out) or {}).get("global_step", 0)) if ckpt_path else 0
    if rank0:
        write_run_status(out, "running", global_step=start, max_steps=cfg.max_steps)

    def step() -> int:  # before a resumed trainer restored its step, the checkpoint's
        return max(start, state["trainer"].global_step if state["trainer"] is not None else 0)

    resume_hint = f"continue it with the same `modise train` command plus --resume (--out {out})"
    try:
        return _fit_and_evaluate(cfg, out, ckpt_path, [*(callbacks or []), state["guard"]], progress, state, recipe)
    except (KeyboardInterrupt, SystemExit) as e:
        from .interrupt import interrupted

        if not interrupted(e, state["guard"]):
            raise
        if rank0:
            write_run_status(out, "interrupted", global_step=step(), max_steps=cfg.max_steps)
        last = out / CKPT_DIR / LAST_CKPT
        if not last.is_file():
            raise TrainingInterrupted(f"Training interrupted before the first step was saved; start it again with --overwrite "
                                      f"(--out {out}).") from None
        raise TrainingInterrupted(f"Training interrupted (checkpoint at step {step()} saved to {last}); {resume_hint}.") from None
    except BaseException as e:
        from .lightning_module import NonFiniteLoss

        if rank0:
            write_run_status(out, "failed", global_step=step(), max_steps=cfg.max_steps, error=f"{type(e).__name__}: {e}")
            if isinstance(e, NonFiniteLoss):
                raise e from None  # its message says what to do; resuming would diverge again
            if (out / CKPT_DIR / LAST_CKPT).is_file():
                print(f"training failed at step {step()}; after fixing the cause, {resume_hint}.", file=sys.stderr)
        raise


def _fit_and_evaluate(cfg: TrainConfig, out: Path, ckpt_path: Path | None, callbacks: list, progress: bool,
                      state: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
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
    overrides = {**(cfg.model_overrides or {}), "input_size": size}  # the model predicts at the size it was trained at
    thresholds = {k: getattr(cfg, k) for k in ("object_mask_threshold", "overlap_threshold") if getattr(cfg, k) is not None}
    if thresholds:  # the model config saved with the weights owns the inference thresholds
        overrides["inference"] = {**overrides.get("inference", {}), **thresholds}
    model = build_model(cfg.preset, cfg.size, random_weights=cfg.random_weights, categories=categories, overrides=overrides or None)
    module = ModiseLightning(model, cfg.lr, cfg.weight_decay, cfg.max_steps, cfg.warmup_steps, cfg.milestones)
    callbacks = list(callbacks)
    deadline = None
    if cfg.time_limit_s:
        from .lightning_module import Deadline

        deadline = Deadline(cfg.time_limit_s)
        callbacks.append(deadline)
    trainer = build_trainer(cfg, out, callbacks, progress)
    state["trainer"] = trainer
    if trainer.is_global_zero:
        write_yaml(out / CONFIG_YAML, run_config(cfg, model, categories, recipe))
    t0 = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None)
    trainer.save_checkpoint(out / CKPT_DIR / LAST_CKPT, weights_only=False)  # resumable: optimiser + loops
    metrics: dict[str, Any] = {}
    if trainer.is_global_zero:
        from modise.outputs import output_dir, write_json_atomic

        with output_dir(out / MODEL_DIR, overwrite=True) as stage:
            model.save_pretrained(stage)
        if dm.val_ids:
            from modise.engine.evaluation.validate import evaluate_held_out
            from modise.pipeline import ModisePipeline

            # the saved model's own settings: input_size = the crop trained at, the run's thresholds; and
            # the other clip_ensemble setting when the model has one (Table 1 with and without it)
            metrics = evaluate_held_out(ModisePipeline(model, device=module.device), cfg.data, dm.val_ids, progress=progress)
        metrics["train"] = {"global_step": trainer.global_step, "max_steps": cfg.max_steps, "seconds": round(time.time() - t0, 1),
                            "fold": cfg.fold, "stopped_by_time_limit": bool(deadline and deadline.stopped_at is not None)}
        write_json_atomic(out / METRICS_JSON, metrics)
        write_run_status(out, COMPLETE, global_step=trainer.global_step, max_steps=cfg.max_steps)
    return metrics


def run_config(cfg: TrainConfig, model, categories, recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """The resolved config of a run: preset at top level, then model, training (with the recipe:
    effective batch, lr, steps, epochs) and data."""
    mcfg = model.config.model_dump() if hasattr(model.config, "model_dump") else dict(model.config)
    training = cfg.model_dump(exclude={"preset", "size", "data", "fold", "random_weights", "model_overrides"})
    training["image_size"] = cfg.resolved_image_size()
    if recipe is not None:
        training["recipe"] = recipe
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
