"""Fine-tune Stable Diffusion into a MAM-E model with Lightning.

Text-to-image: full fine-tune of the UNet and the text encoder (VAE frozen) with the DDPM
noise-prediction loss: encode with the VAE, draw a uniform timestep and Gaussian noise,
predict the noise. Inpainting: the 9-channel UNet sees noisy latents + the downsampled
mask + the masked image's latents, prompt ``a mammogram with a lesion``. The run folder
ends up as a diffusers pipeline (``save_pretrained``) that ``--model RUN`` accepts.

LoRA (option, ``lora_rank > 0``): peft adapters on the UNet's attention projections (and,
on request, the text encoder's), everything else frozen. Checkpoints hold the adapters
only; the final pipeline has them fused in, and ``RUN/lora/`` holds them alone.
Settings: :class:`modise.synthesis.mame_config.MameTrainConfig`; the model: :mod:`modise.synthesis.mame_module`;
data: :mod:`modise.synthesis.mame_dataset`; callbacks: :mod:`modise.synthesis.mame_callbacks`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from modise.errors import ModiseError, UsageError
from modise.synthesis.mame_callbacks import VALIDATION_PROMPTS, FixedLoss, ValidationStrip
from modise.synthesis.mame_config import MameTrainConfig
from modise.synthesis.mame_dataset import PromptImageFolder
from modise.synthesis.mame_module import MameModule, fixed_loss, save_pipeline


def train_mame(cfg: MameTrainConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
               progress: bool = True, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune ``cfg.base`` on a prepared folder into run folder ``out``, which ends as a diffusers pipeline.

    The run folder follows ``modise train``'s layout: ``config.yaml`` (the resolved ``cfg``,
    see :meth:`MameTrainConfig.run_config`), ``checkpoints/last.ckpt`` (``resume`` continues
    it), ``logs/`` (TensorBoard + CSV, one folder across resumes), plus ``validation/``,
    ``train_summary.json`` and the pipeline itself. ``overwrite`` starts a non-empty ``out``
    again. ``say`` (a ``str -> None``) hears what happens before the first step.
    """
    from modise.engine.training.lightning_console import quiet_lightning
    from modise.runs import CKPT_DIR, CONFIG_YAML, LAST_CKPT, prepare_run_dir, write_yaml

    out = Path(out)
    say = say or (lambda msg: None)
    ckpt = out / CKPT_DIR / LAST_CKPT
    if resume and not ckpt.is_file():
        raise ModiseError(f"{ckpt}: no checkpoint to resume from.")
    if not (Path(cfg.data) / "metadata.jsonl").is_file():  # before the run folder is made
        raise UsageError("--data", f"'{cfg.data}' holds no metadata.jsonl; prepare it with `modise mame prepare` first.")
    if resume:
        _check_resume(cfg, out)
    prepare_run_dir(out, resume, overwrite, [cfg.data, cfg.base])
    cfg = cfg.resolved()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module, dataset = _build(cfg, ckpt if resume else None, say)
    with quiet_lightning():  # Lightning's GPU/TPU lines and tips
        trainer = _trainer(cfg, module, dataset, out, progress, say)
    effective = cfg.batch_size * cfg.grad_accum * trainer.world_size
    if trainer.is_global_zero:
        write_yaml(out / CONFIG_YAML, cfg.run_config(
            resolution=dataset.resolution, images=len(dataset), precision=str(trainer.precision),
            world_size=trainer.world_size, effective_batch=effective))
    say(f"recipe {cfg.recipe}: batch {cfg.batch_size} x accumulation {cfg.grad_accum} x {trainer.world_size} "
        f"device(s) = effective batch {effective}; {cfg.max_steps} steps, lr {cfg.lr:g}, "
        f"weight decay {cfg.weight_decay:g}, clip {cfg.grad_clip:g}; {len(dataset)} image(s)")
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                        drop_last=len(dataset) > cfg.batch_size)  # MAM-E drops the last partial batch (config l.52)
    with quiet_lightning():
        _fit(trainer, module, loader, ckpt if resume else None, out)
    trainer.save_checkpoint(ckpt)
    fixed = next(cb for cb in trainer.callbacks if isinstance(cb, FixedLoss))
    summary = {"global_step": int(trainer.global_step), "loss_before": fixed.before, "images": len(dataset),
               "inpainting": cfg.inpainting, "resolution": dataset.resolution, "lora_rank": cfg.lora_rank,
               "recipe": cfg.recipe, "effective_batch": effective,
               "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad)}
    if trainer.is_global_zero:
        if fixed.before is None:  # fit had nothing left to do (resumed at max_steps): measure here
            fixed.before = fixed.after = fixed_loss(module, dataset, cfg.seed)
            summary["loss_before"] = fixed.before
        summary["loss_after"] = fixed.after
        module.to("cpu")
        save_pipeline(module, out)
        stats = Path(cfg.data) / "box_stats.json"
        if cfg.inpainting and stats.is_file():  # inpaint --model RUN draws boxes from it
            (out / "box_stats.json").write_text(stats.read_text())
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


# may change on --resume: how the run runs, and its length (the recipe's rate is constant, so a resumed run counts on)
MAY_CHANGE = {"devices", "num_nodes", "precision", "num_workers", "checkpoint_every", "val_every", "val_steps", "max_steps"}


def _check_resume(cfg: MameTrainConfig, out: Path) -> None:
    """Refuse ``--resume`` with settings other than those ``out/config.yaml`` recorded, naming each."""
    import yaml

    from modise.checks import check_same_settings
    from modise.runs import CONFIG_YAML

    try:
        recorded = yaml.safe_load((out / CONFIG_YAML).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return  # stopped before it wrote its config: nothing to compare with
    res = cfg.resolved()
    top = {"base": res.base_name(), "size": res.size, "random_weights": res.random_weights, "inpainting": res.inpainting,
           "data": str(Path(res.data).resolve())}
    now = {**top, **res.model_dump(exclude={*top, *MAY_CHANGE})}
    before = {**{k: recorded.get(k) for k in top}, **(recorded.get("training") or {})}
    check_same_settings(out, before, now, {"train_text_encoder": "--lora-text-encoder/--freeze-text-encoder"})


def _fit(trainer: L.Trainer, module: MameModule, loader: DataLoader, resume_from: Path | None, out: Path) -> None:
    """``trainer.fit``; on Ctrl-C save the step reached and raise :class:`TrainingInterrupted` saying how to resume."""
    from modise.engine.training.interrupt import SaveOnException, interrupted
    from modise.errors import TrainingInterrupted

    guard = next(cb for cb in trainer.callbacks if isinstance(cb, SaveOnException))
    try:
        trainer.fit(module, loader, ckpt_path=str(resume_from) if resume_from else None)
    except (KeyboardInterrupt, SystemExit) as e:
        if not interrupted(e, guard):
            raise
        last = guard.saved or (resume_from if resume_from and resume_from.is_file() else None)
        if last is None:
            raise TrainingInterrupted(f"Training interrupted before the first step; start it again with --overwrite "
                                      f"(--out {out}).") from None
        raise TrainingInterrupted(f"Training interrupted (checkpoint at step {trainer.global_step} saved to {last}); "
                                  f"continue it with the same `modise mame train` command plus --resume "
                                  f"(--out {out}).") from None


def _build(cfg: MameTrainConfig, resume_from: Path | None, say: Callable[[str], None]):
    """The base pipeline (on the CPU; Lightning moves it), the module and the dataset of a resolved ``cfg``."""
    from modise.model.stable_diffusion import build_scheduler
    from modise.synthesis.pipelines import load_inpaint, load_text2img, native_resolution

    say(f"loading the base pipeline ({cfg.base_name()}) ...")
    load = load_inpaint if cfg.inpainting else load_text2img
    pipe = load(cfg.base_name(), size=cfg.size, random_weights=cfg.random_weights, seed=cfg.seed, device="cpu")
    dataset = PromptImageFolder(cfg.data, pipe.tokenizer, cfg.resolution or native_resolution(pipe), cfg.inpainting)
    noise_scheduler = build_scheduler("ddpm") if cfg.random_weights else _ddpm_from(pipe.scheduler.config)
    module = MameModule(pipe.vae, pipe.text_encoder, pipe.unet, pipe.tokenizer, noise_scheduler, cfg.lr,
                        cfg.train_text_encoder, cfg.inpainting, cfg.lora_rank, cfg.weight_decay)
    if resume_from:  # fails early and clearly on a checkpoint of another kind; fit() restores it again
        _load_checkpoint(module, resume_from)
    return module, dataset


def _trainer(cfg: MameTrainConfig, module: MameModule, dataset: PromptImageFolder, out: Path, progress: bool,
             say: Callable[[str], None]) -> L.Trainer:
    """Lightning trainer with ``modise train``'s run layout, precision rule and flag meanings."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from modise.engine.training.interrupt import SaveOnException
    from modise.precision import resolve_precision
    from modise.engine.training.lightning_console import StepProgressBar
    from modise.engine.training.run_logs import run_loggers
    from modise.runs import CKPT_DIR, LAST_CKPT

    val_image = val_mask = None
    if cfg.inpainting:
        first = dataset[0]
        val_image = ((first["pixels"][0].numpy() + 1) * 127.5).round().astype(np.uint8)
        val_mask = first["mask"][0].numpy() > 0.5
    prompts = ("a mammogram with a lesion",) * 2 if cfg.inpainting else VALIDATION_PROMPTS
    strip = ValidationStrip(out / "validation", cfg.val_every, prompts, dataset.resolution, cfg.val_steps,
                            val_mask, val_image)
    checkpoint = ModelCheckpoint(dirpath=out / CKPT_DIR, save_last=True, save_top_k=0,
                                 every_n_train_steps=cfg.checkpoint_every)
    bar = [StepProgressBar("mame train")] if progress else []  # steps, not "Epoch 1/-2"; plain lines in a log
    return L.Trainer(
        max_steps=cfg.max_steps, accumulate_grad_batches=cfg.grad_accum, gradient_clip_val=cfg.grad_clip or None,
        precision=resolve_precision(cfg.precision, cfg.accelerator), devices=cfg.devices, num_nodes=cfg.num_nodes,
        accelerator=cfg.accelerator,
        callbacks=[FixedLoss(dataset, cfg.seed, say), strip, checkpoint, SaveOnException(out / CKPT_DIR / LAST_CKPT)] + bar, logger=run_loggers(out),
        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=1, default_root_dir=out,
    )


def _load_checkpoint(module: MameModule, ckpt: Path) -> None:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    trainable = {n: p.shape for n, p in module.named_parameters() if p.requires_grad}
    if module.lora_rank and any(n not in state or state[n].shape != s for n, s in trainable.items()):
        raise ModiseError(f"{ckpt}: not a LoRA checkpoint of this rank and text-encoder choice; resume as it was started.")
    if not module.lora_rank and any("lora_" in k for k in state):
        raise ModiseError(f"{ckpt}: a LoRA checkpoint; resume with --lora and its --lora-rank.")
    module.load_state_dict(state, strict=not module.lora_rank)


def _ddpm_from(config: Any):
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(config)
