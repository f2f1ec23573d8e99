"""``modise train``: one run (one held-out fold) of a Table-1 preset on Lightning."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from modise.errors import TrainingInterrupted

from modise.runs import (
    CKPT_DIR, COMPLETE, CONFIG_YAML, LAST_CKPT, METRICS_JSON, MODEL_DIR, is_global_zero, prepare_run_dir,
    read_run_status, write_run_status, write_yaml,
)

from .config import TrainConfig, run_record


def _precision(cfg: TrainConfig) -> str:
    from modise.precision import resolve_precision

    return resolve_precision(cfg.precision, cfg.accelerator)


def _strategy(cfg: TrainConfig):
    if cfg.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        # some heads (e.g. the void embedding on a batch without lesions) get no gradient on a step
        return DDPStrategy(find_unused_parameters=True)
    return cfg.strategy


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
    cfg: TrainConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False, callbacks: list | None = None, progress: bool = True,
    both_ensembles: bool = True,
) -> dict[str, Any]:
    """Train ``cfg`` into run folder ``out``; return the validation metrics (empty without a held-out fold).

    ``both_ensembles``: score the held-out fold with and without the CLIP ensemble (Table 1's two rows;
    :func:`~modise.engine.evaluation.validate.evaluate_held_out`), else with the preset's setting only.

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
    model_cfg = check_train_config(cfg)  # a mistyped command stops here, before the run folder is touched
    if resume:
        check_resume(cfg, out, model_cfg.input_size)
    ckpt_path = prepare_run_dir(out, resume, overwrite, inputs=[cfg.data])
    with quiet_lightning():
        world_size = trainer_world_size(cfg)
        used = scale_to_batch(cfg, world_size)
        recipe = recipe_record(cfg, used, world_size, len(split_fold(cfg.data, cfg.fold)[0]))
        if progress and is_global_zero():
            print(recipe_line(recipe), file=sys.stderr)
        return _train(used, model_cfg, out, ckpt_path, callbacks, progress, recipe, both_ensembles)


def _train(cfg: TrainConfig, model_cfg, out: Path, ckpt_path: Path | None, callbacks: list | None, progress: bool,
           recipe: dict[str, Any], both_ensembles: bool = True) -> dict[str, Any]:
    state: dict[str, Any] = {"trainer": None, "guard": _checkpoint_on_exception(out, cfg.max_steps)}
    rank0 = is_global_zero()
    start = int((read_run_status(out) or {}).get("global_step", 0)) if ckpt_path else 0
    if rank0:
        write_run_status(out, "running", global_step=start, max_steps=cfg.max_steps)

    def step() -> int:  # before a resumed trainer restored its step, the checkpoint's
        return max(start, state["trainer"].global_step if state["trainer"] is not None else 0)

    resume_hint = f"continue it with the same `modise train` command plus --resume (--out {out})"
    try:
        return _fit_and_evaluate(cfg, model_cfg, out, ckpt_path, [*(callbacks or []), state["guard"]], progress, state, recipe,
                                 both_ensembles)
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


def _fit_and_evaluate(cfg: TrainConfig, model_cfg, out: Path, ckpt_path: Path | None, callbacks: list, progress: bool,
                      state: dict[str, Any], recipe: dict[str, Any], both_ensembles: bool = True) -> dict[str, Any]:
    import lightning as L

    from modise.data.dataset import load_categories
    from modise.model.build import build_from_config

    from .datamodule import PanopticDataModule
    from .lightning_module import ModiseLightning

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = PanopticDataModule(
        cfg.data, cfg.fold, image_size=model_cfg.input_size, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
        accelerator=cfg.accelerator, devices=cfg.devices,
        min_scale=cfg.min_scale, max_scale=cfg.max_scale, intensity=cfg.intensity_jitter, seed=cfg.seed,
    )
    categories = load_categories(cfg.data)
    model = build_from_config(model_cfg, categories)
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
        write_yaml(out / CONFIG_YAML, run_record(cfg, model_cfg.input_size, categories, recipe))
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
            metrics = evaluate_held_out(ModisePipeline(model, device=module.device), cfg.data, dm.val_ids, progress=progress,
                                        both_ensembles=both_ensembles)
        metrics["train"] = {"global_step": trainer.global_step, "max_steps": cfg.max_steps, "seconds": round(time.time() - t0, 1),
                            "fold": cfg.fold, "stopped_by_time_limit": bool(deadline and deadline.stopped_at is not None)}
        write_json_atomic(out / METRICS_JSON, metrics)
        write_run_status(out, COMPLETE, global_step=trainer.global_step, max_steps=cfg.max_steps)
    return metrics
