"""Fine-tune Stable Diffusion into a MAM-E model with Lightning.

Text-to-image: full fine-tune of the UNet and the text encoder (VAE frozen) with the DDPM
noise-prediction loss: encode with the VAE, draw a uniform timestep and Gaussian noise,
predict the noise. Inpainting: the 9-channel UNet sees noisy latents + the downsampled
mask + the masked image's latents, prompt ``a mammogram with a lesion``. The run folder
ends up as a diffusers pipeline (``save_pretrained``) that ``--model RUN`` accepts.

LoRA (option, ``lora_rank > 0``): peft adapters on the UNet's attention projections (and,
on request, the text encoder's), everything else frozen. Checkpoints hold the adapters
only; the final pipeline has them fused in, and ``RUN/lora/`` holds them alone.
Settings: :class:`modise.synthesis.mame_config.MameTrainConfig`.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from modise.errors import ModiseError, UsageError
from modise.synthesis.mame_config import MameTrainConfig

LORA_UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
LORA_TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
LOGS_DIR = "logs"
VALIDATION_PROMPTS = (  # one training caption per vendor (prompts.training_caption)
    "a siemens mammogram in CC view with low density",
    "a hologic mammogram in MLO view with big area",
)


class PromptImageFolder(Dataset):
    """A ``metadata.jsonl`` folder (from ``modise mame prepare``): image in [-1, 1], token ids, mask.

    Item: ``pixels`` FloatTensor[3, S, S], ``input_ids`` LongTensor[77], and for inpainting
    ``mask`` FloatTensor[1, S, S] (1 = inpaint).
    """

    def __init__(self, root: str | Path, tokenizer: Any, resolution: int = 512, inpainting: bool = False) -> None:
        self.root, self.resolution, self.inpainting = Path(root), resolution, inpainting
        meta = self.root / "metadata.jsonl"
        if not meta.is_file():
            raise ModiseError(f"{meta}: not found; run `modise mame prepare` first.")
        self.records = []
        for i, line in enumerate(meta.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                rec["file_name"], rec["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ModiseError(f"{meta} line {i}: needs JSON with file_name and text.") from None
            if inpainting and "mask_file_name" not in rec:
                raise ModiseError(f"{meta} line {i}: no mask_file_name; prepare with --inpainting.")
            self.records.append(rec)
        if not self.records:
            raise ModiseError(f"{meta}: no images listed.")
        ids = tokenizer([r["text"] for r in self.records], padding="max_length", truncation=True,
                        max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
        self.input_ids = ids

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, name: str, mode: str) -> np.ndarray:
        from PIL import Image

        with Image.open(self.root / name) as im:
            im = im.convert(mode)
            if im.size != (self.resolution, self.resolution):
                im = im.resize((self.resolution, self.resolution), Image.BILINEAR if mode == "L" else Image.NEAREST)
            return np.asarray(im, np.float32) / 255.0

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rec = self.records[i]
        grey = torch.from_numpy(self._load(rec["file_name"], "L"))
        item = {"pixels": (grey * 2 - 1)[None].expand(3, -1, -1).contiguous(), "input_ids": self.input_ids[i]}
        if self.inpainting:
            item["mask"] = (torch.from_numpy(self._load(rec["mask_file_name"], "L")) > 0.5).float()[None]
        return item


def add_lora(model: Any, rank: int, targets: tuple[str, ...]) -> None:
    """Freeze ``model`` and add a trainable LoRA adapter (rank ``rank``, alpha = rank) on ``targets``.

    ``model`` is a diffusers UNet or a transformers text encoder (both have ``add_adapter``).
    B starts at zero, so the adapted model starts as the base model.
    """
    try:
        from peft import LoraConfig
    except ImportError:
        raise ModiseError("LoRA needs the peft package: pip install 'peft>=0.20'.") from None
    model.requires_grad_(False)
    model.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                 target_modules=list(targets)))


class MameModule(L.LightningModule):
    """UNet + text encoder trained on the noise-prediction loss; VAE frozen. Parts are injected.

    ``lora_rank`` 0: full fine-tune. > 0: LoRA adapters on the UNet attention (and the text
    encoder's when ``train_text_encoder``); only adapter weights train and are checkpointed.
    """

    def __init__(self, vae: Any, text_encoder: Any, unet: Any, tokenizer: Any, noise_scheduler: Any,
                 lr: float = 1e-6, train_text_encoder: bool = True, inpainting: bool = False,
                 lora_rank: int = 0, weight_decay: float = 1e-2) -> None:
        super().__init__()
        self.weight_decay = weight_decay
        self.vae, self.text_encoder, self.unet = vae, text_encoder, unet
        self.tokenizer, self.noise_scheduler = tokenizer, noise_scheduler
        self.lr, self.train_text_encoder, self.inpainting = lr, train_text_encoder, inpainting
        self.lora_rank = lora_rank
        self.vae.requires_grad_(False)
        if lora_rank:
            add_lora(self.unet, lora_rank, LORA_UNET_TARGETS)
            self.text_encoder.requires_grad_(False)
            if train_text_encoder:
                add_lora(self.text_encoder, lora_rank, LORA_TEXT_TARGETS)
            self.strict_loading = False  # checkpoints hold the adapters only; the base comes from --model
        else:
            self.text_encoder.requires_grad_(train_text_encoder)
            self.unet.requires_grad_(True)

    def _latents(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.vae.encode(pixels).latent_dist.sample() * self.vae.config.scaling_factor

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """DDPM loss: MSE between the UNet's prediction and the noise (or v) target."""
        self.vae.eval()
        latents = self._latents(batch["pixels"])
        noise = torch.randn_like(latents)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        if self.inpainting:
            mask = batch["mask"]
            masked = self._latents(batch["pixels"] * (mask < 0.5))
            small = F.interpolate(mask, size=latents.shape[-2:], mode="nearest")
            noisy = torch.cat([noisy, small, masked], dim=1)
        cond = self.text_encoder(batch["input_ids"])[0]
        pred = self.unet(noisy, t, encoder_hidden_states=cond).sample
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, t)
        else:
            target = noise
        return F.mse_loss(pred.float(), target.float())

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True)
        return loss

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)  # constant LR, as MAM-E

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.lora_rank:  # a few MB of adapters instead of the whole frozen pipeline
            keep = {n for n, p in self.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def pipeline(self):
        """The current weights as a diffusers pipeline (DPM-Solver, no safety checker)."""
        from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

        from modise.synthesis.pipelines import dpm_scheduler

        cls = StableDiffusionInpaintPipeline if self.inpainting else StableDiffusionPipeline
        pipe = cls(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer, unet=self.unet,
                   scheduler=dpm_scheduler(self.noise_scheduler.config), safety_checker=None,
                   feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe


class ValidationStrip(L.Callback):
    """Every ``every`` steps, images from fixed prompts and seeds -> ``validation/step_XXXXXX.png``."""

    def __init__(self, out: Path, every: int, prompts: tuple[str, ...], resolution: int, steps: int = 20,
                 mask: np.ndarray | None = None, image: np.ndarray | None = None) -> None:
        self.out, self.every, self.prompts, self.resolution, self.steps = out, every, prompts, resolution, steps
        self.mask, self.image = mask, image
        self.done = -1

    def on_train_batch_end(self, trainer: L.Trainer, module: MameModule, *args: Any) -> None:
        step = trainer.global_step
        # With gradient accumulation several batches end at the same global_step: draw once.
        if self.every <= 0 or step == 0 or step % self.every or step == self.done or not trainer.is_global_zero:
            return
        self.done = step
        from modise.synthesis.generate import generate_images, image_grid
        from modise.synthesis.inpaint import inpaint_lesion

        pipe = module.pipeline()
        was_training = module.training
        module.eval()
        with torch.no_grad():
            if module.inpainting:
                row = [inpaint_lesion(pipe, self.image, self.mask, seed=s, steps=self.steps, crop=self.resolution)[0]
                       for s in range(len(self.prompts))]
            else:
                # guidance 4 as MAM-E's validation (config_file.yaml@dc9fead:22)
                row = [generate_images(pipe, p, 1, s, self.steps, 4.0, "L", self.resolution)[0]
                       for s, p in enumerate(self.prompts)]
        module.train(was_training)
        self.out.mkdir(parents=True, exist_ok=True)
        strip = image_grid([row])
        strip.save(self.out / f"step_{step:06d}.png")
        exp = getattr(trainer.logger, "experiment", None)
        if exp is not None and hasattr(exp, "add_image"):
            exp.add_image("validation", np.asarray(strip)[None], step)


def save_lora(module: MameModule, out: Path) -> Path:
    """Write the adapters alone (``pytorch_lora_weights.safetensors``, diffusers' LoRA format) to ``out``.

    Loadable on the base model with ``pipe.load_lora_weights(out)``.
    """
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    def layers(model: Any) -> dict[str, torch.Tensor]:
        return convert_state_dict_to_diffusers(get_peft_model_state_dict(model))

    pipe = module.pipeline()
    text = module.train_text_encoder
    pipe.save_lora_weights(
        out, unet_lora_layers=layers(module.unet),
        text_encoder_lora_layers=layers(module.text_encoder) if text else None,
        unet_lora_adapter_metadata=module.unet.peft_config["default"].to_dict(),
        text_encoder_lora_adapter_metadata=module.text_encoder.peft_config["default"].to_dict() if text else None,
    )
    return out


def save_pipeline(module: MameModule, out: Path) -> None:
    """Write the run folder's diffusers pipeline (model_index.json, unet/, vae/, text_encoder/, ...).

    With LoRA the adapters go to ``out/lora/`` first, then are fused into the weights and removed
    (diffusers' ``fuse_lora`` + ``unload_lora_weights``), so ``out`` is a plain pipeline.
    """
    if module.lora_rank:
        save_lora(module, out / "lora")
    pipe = module.pipeline()  # shares the module's UNet and text encoder: fusing changes them in place
    if module.lora_rank:
        pipe.fuse_lora(components=["unet", "text_encoder"] if module.train_text_encoder else ["unet"])
        pipe.unload_lora_weights()
    pipe.save_pretrained(out)


@torch.no_grad()
def fixed_loss_tensor(module: MameModule, dataset: Dataset, seed: int = 0, repeats: int = 2,
                      max_images: int = 16) -> torch.Tensor:
    """Mean loss over the first ``max_images`` images with fixed noise and timesteps, as a 0-d tensor.

    Runs wherever ``module`` is: batches go to its device and the random draws come from a
    generator seeded there, so the value is comparable before and after training.
    """
    was = module.training
    module.eval()
    device = next(module.parameters()).device
    state = torch.random.get_rng_state()
    cuda_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    torch.manual_seed(seed)  # seeds every device's default generator (randn_like, randint, VAE sample)
    total, count = torch.zeros((), device=device), 0
    for _ in range(repeats):
        for i in range(min(len(dataset), max_images)):
            batch = {k: v[None].to(device) for k, v in dataset[i].items()}
            total = total + module.loss(batch).float()
            count += 1
    torch.random.set_rng_state(state)
    if cuda_state is not None:
        torch.cuda.set_rng_state(cuda_state, device)
    module.train(was)
    return total / max(count, 1)


def fixed_loss(module: MameModule, dataset: Dataset, seed: int = 0, repeats: int = 2, max_images: int = 16) -> float:
    """:func:`fixed_loss_tensor` as a float."""
    return float(fixed_loss_tensor(module, dataset, seed, repeats, max_images))


class FixedLoss(L.Callback):
    """The fixed-noise loss at the start and the end of ``fit``, on the training device (rank 0 only).

    Lightning has moved the module to its device (and restored a resumed checkpoint) by
    ``on_train_start``; at ``on_train_end`` the module is still there (teardown moves it to the CPU).
    """

    def __init__(self, dataset: Dataset, seed: int, say: Any = None) -> None:
        self.dataset, self.seed, self.say = dataset, seed, say
        self.before: float | None = None
        self.after: float | None = None

    def _measure(self, trainer: L.Trainer, module: MameModule, when: str) -> float | None:
        if not trainer.is_global_zero:
            return None
        if self.say:
            n = min(len(self.dataset), 16)
            self.say(f"fixed-noise loss {when} training on {n} image(s), {module.device} ...")
        return fixed_loss(module, self.dataset, self.seed)

    def on_train_start(self, trainer: L.Trainer, module: MameModule) -> None:
        self.before = self._measure(trainer, module, "before")

    def on_train_end(self, trainer: L.Trainer, module: MameModule) -> None:
        self.after = self._measure(trainer, module, "after")


def train_mame(cfg: MameTrainConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
               progress: bool = True, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune ``cfg.base`` on a prepared folder into run folder ``out``, which ends as a diffusers pipeline.

    The run folder follows ``modise train``'s layout: ``config.yaml`` (the resolved ``cfg``,
    see :meth:`MameTrainConfig.run_config`), ``checkpoints/last.ckpt`` (``resume`` continues
    it), ``logs/`` (TensorBoard + CSV, one folder across resumes), plus ``validation/``,
    ``train_summary.json`` and the pipeline itself. ``overwrite`` starts a non-empty ``out``
    again. ``say`` (a ``str -> None``) hears what happens before the first step.
    """
    from modise.engine.training.progress import quiet_lightning
    from modise.engine.training.train import CKPT_DIR, CONFIG_YAML, LAST_CKPT, prepare_run_dir, write_yaml

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
    earlier = _csv_rows(out / LOGS_DIR / "metrics.csv") if resume else []
    with warnings.catch_warnings(), quiet_lightning():
        # CSVLogger warns it restarts logs/metrics.csv; _prepend_csv_rows keeps the rows
        warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
        _fit(trainer, module, loader, ckpt if resume else None, out)
    trainer.save_checkpoint(ckpt)
    fixed = next(cb for cb in trainer.callbacks if isinstance(cb, FixedLoss))
    summary = {"global_step": int(trainer.global_step), "loss_before": fixed.before, "images": len(dataset),
               "inpainting": cfg.inpainting, "resolution": dataset.resolution, "lora_rank": cfg.lora_rank,
               "recipe": cfg.recipe, "effective_batch": effective,
               "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad)}
    if trainer.is_global_zero:
        _prepend_csv_rows(out / LOGS_DIR / "metrics.csv", earlier)
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
    from modise.engine.training.train import CONFIG_YAML

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
    from modise.model.sd_parts import build_scheduler
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
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from modise.engine.training.interrupt import SaveOnException
    from modise.precision import resolve_precision
    from modise.engine.training.progress import StepProgressBar
    from modise.engine.training.train import CKPT_DIR, LAST_CKPT

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
    # version="": one logs/ folder across resumes (TensorBoard first: the validation strip goes to it)
    loggers = [TensorBoardLogger(out, name=LOGS_DIR, version=""), CSVLogger(out, name=LOGS_DIR, version="")]
    return L.Trainer(
        max_steps=cfg.max_steps, accumulate_grad_batches=cfg.grad_accum, gradient_clip_val=cfg.grad_clip or None,
        precision=resolve_precision(cfg.precision, cfg.accelerator), devices=cfg.devices, num_nodes=cfg.num_nodes,
        accelerator=cfg.accelerator,
        callbacks=[FixedLoss(dataset, cfg.seed, say), strip, checkpoint, SaveOnException(out / CKPT_DIR / LAST_CKPT)] + bar, logger=loggers,
        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=1, default_root_dir=out,
    )


def _csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _prepend_csv_rows(path: Path, earlier: list[dict[str, str]]) -> None:
    """Put the curve from before ``--resume`` back in front of the new rows (CSVLogger starts its file anew).

    Rows logged after the resumed checkpoint (a run killed between checkpoints) give way to the new ones.
    """
    new = _csv_rows(path)
    first = min((int(r["step"]) for r in new if r.get("step")), default=None)
    earlier = [r for r in earlier if first is None or (r.get("step") and int(r["step"]) < first)]
    if not earlier:
        return
    rows = earlier + new
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


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
