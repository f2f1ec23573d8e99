"""MAM-E's trainable model: the Stable Diffusion parts under the DDPM noise-prediction loss.

Text-to-image: full fine-tune of the UNet and the text encoder (VAE frozen): encode with the VAE,
draw a uniform timestep and Gaussian noise, predict the noise. Inpainting: the 9-channel UNet sees
noisy latents + the downsampled mask + the masked image's latents. LoRA (``lora_rank > 0``): peft
adapters on the UNet's attention projections (and, on request, the text encoder's), everything
else frozen; checkpoints hold the adapters only, the saved pipeline has them fused in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from modise.errors import ModiseError

LORA_UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
LORA_TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


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
