"""The composed M-ODISE model (Fig. 1): backbone features -> Mask2Former -> text/linear class head."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from modise.data.panoptic import Category
from modise.errors import ModiseError
from modise.model.backbone import Backbone
from modise.model.config import InferenceConfig, ModelConfig
from modise.model.criterion import SetCriterion
from modise.model.implicit_captioner import ImplicitCaptioner
from modise.model.inference import postprocess
from modise.model.mask_generator import MaskGenerator

CONFIG_FILE, CATEGORIES_FILE, WEIGHTS_FILE = "config.yaml", "categories.json", "model.safetensors"


def _cast_inputs_to_own_dtype(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook of frozen parts: floating inputs take the module's (maybe bf16) dtype."""
    p = next(module.parameters(), None)
    if p is None:
        return args
    return tuple(a.to(p.dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)


class MODISE(nn.Module):
    """Panoptic segmenter on frozen diffusion (or Swin) features; parts are passed by keyword
    (:func:`modise.model.build_parts.build_parts` builds them for a config, :func:`build_model` for a preset).

    ``backbone(images, captioner)`` -> 4 maps -> ``mask_generator`` -> masks + queries -> ``class_head``.
    ``forward(images [B,3,H,W] in [0,1], H, W multiples of 32)`` returns
    ``{"pred_logits" [B,Q,K+1], "pred_masks" [B,Q,H/4,W/4], "aux_outputs": [...]}``.
    """

    def __init__(self, config: ModelConfig, categories: list[Category], *, backbone: Backbone,
                 mask_generator: MaskGenerator, class_head: nn.Module, captioner: ImplicitCaptioner | None = None,
                 extras: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.config = config
        self.categories = list(categories)
        self.backbone = backbone
        self.captioner = captioner  # the backbone's conditioning (ODISE's implicit captioner), if any
        self.mask_generator = mask_generator
        self.class_head = class_head
        self.criterion = SetCriterion(len(categories), config.loss)
        self.extras = nn.ModuleDict(extras or {})  # frozen parts kept only for accounting (e.g. the text tower)

    # ------------------------------------------------------------------ features
    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images [B,3,H,W] in [0,1] -> 4 maps at strides 4, 8, 16, 32, in the heads' dtype."""
        self._auto_frozen_precision(images.device)
        maps = self.backbone(images, self.captioner)
        dtype = next(self.mask_generator.parameters()).dtype
        if not torch.is_autocast_enabled(images.device.type):  # bf16 frozen outputs -> the heads' dtype
            maps = [m.to(dtype) for m in maps]
        return maps

    @torch.no_grad()
    def set_frozen_precision(self, precision: str = "bf16", channels_last: bool | None = None) -> "MODISE":
        """Store the frozen parts (VAE, UNet, image/text towers, frozen Swin) in ``precision``
        ("bf16" | "fp32"); trainable parts stay fp32 (run them under bf16 autocast for speed).
        ``channels_last`` (default: config, on CUDA only) also lays the VAE/UNet out channels-last."""
        if precision not in ("bf16", "fp32"):
            raise ModiseError(f"precision must be 'bf16' or 'fp32', not {precision!r}.")
        self._apply_frozen_precision(precision, channels_last)
        self._frozen_precision_explicit = True
        return self

    def _apply_frozen_precision(self, precision: str, channels_last: bool | None = None) -> None:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        for m in self.frozen_modules():
            m.to(dtype)
            # Callers hand fp32 tensors to the frozen parts (and to their towers, e.g. clip.visual).
            for part in (m, *(c for c in m.children() if next(c.parameters(), None) is not None)):
                if not getattr(part, "_modise_casts_inputs", False):
                    part.register_forward_pre_hook(_cast_inputs_to_own_dtype)
                    part._modise_casts_inputs = True
        self.backbone.set_memory_format(self.config.diffusion.channels_last if channels_last is None else channels_last)

    def _auto_frozen_precision(self, device: torch.device) -> None:
        """``diffusion.frozen_precision`` at the first forward on each device type (unless set explicitly):
        "auto" stores frozen weights in bf16 on a bf16-capable GPU and leaves them alone elsewhere."""
        d = self.config.diffusion
        if d.compile and not getattr(self, "_compiled", False):
            self.backbone.compile_frozen()
            self._compiled = True
        if getattr(self, "_frozen_precision_explicit", False) or getattr(self, "_auto_device", None) == device.type:
            return
        self._auto_device = device.type
        if d.frozen_precision != "auto":
            self._apply_frozen_precision(d.frozen_precision)
        elif device.type == "cuda" and torch.cuda.is_bf16_supported():
            self._apply_frozen_precision("bf16")

    def forward(self, images: torch.Tensor) -> dict:
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"image size {h}x{w} must be a multiple of 32 (inference() pads for you)")
        masks, queries, mask_features = self.mask_generator(self.features(images))
        # ODISE's class head pools the pixel decoder's features under each layer's own masks; the
        # earlier layers' logits only feed the deep-supervision losses, so inference skips them.
        if not self.training:
            return {"pred_logits": self.class_head(queries[-1], mask_features, masks[-1]), "pred_masks": masks[-1],
                    "aux_outputs": []}
        logits = [self.class_head(q, mask_features, m) for q, m in zip(queries, masks)]
        out = {"pred_logits": logits[-1], "pred_masks": masks[-1]}
        out["aux_outputs"] = [{"pred_logits": l, "pred_masks": m} for l, m in zip(logits[:-1], masks[:-1])]
        return out

    def padded_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) rounded up to a multiple of ``config.size_divisibility``: the size :meth:`pad` gives."""
        d = self.config.size_divisibility
        return -(-int(size[0]) // d) * d, -(-int(size[1]) // d) * d

    def pad(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None):
        """Zero-pad images [B,C,H,W] (and the targets' masks [N,H,W]) at the bottom/right to a multiple of
        ``config.size_divisibility``, as detectron2's ``ImageList.from_tensors`` and Mask2Former's
        ``prepare_targets`` do (maskformer_model.py:264-278). Returns ``images`` or ``(images, targets)``."""
        h, w = images.shape[-2:]
        ph, pw = self.padded_size((h, w))
        if (ph, pw) != (h, w):
            images = F.pad(images, (0, pw - w, 0, ph - h))
            if targets is not None:
                targets = [{**t, "masks": F.pad(t["masks"], (0, pw - w, 0, ph - h))} for t in targets]
        return images if targets is None else (images, targets)

    def loss(self, outputs: dict, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Weighted set criterion with deep supervision; ``"loss"`` is the total to backpropagate."""
        return self.criterion(outputs, targets)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def inference(self, images: torch.Tensor, image_sizes: list[tuple[int, int]] | None = None,
                  output_sizes: list[tuple[int, int]] | None = None, settings: InferenceConfig | None = None,
                  compact: bool = False) -> list[dict]:
        """Any-size images [B,3,H,W] in [0,1] -> per image sem_seg / panoptic_seg / instances (docs/reference/models.md);
        ``settings``: the inference settings (default ``config.inference``; a per-call copy is
        ``config.inference.replace(...)``); ``compact``: :func:`~modise.model.inference.postprocess`'s
        low-memory form (what ``predict`` writes)."""
        b, _, h, w = images.shape
        image_sizes = [tuple(s) for s in (image_sizes or [(h, w)] * b)]
        output_sizes = [tuple(s) for s in (output_sizes or image_sizes)]
        ic = settings or self.config.inference
        if ic.clip_ensemble and "clip_ensemble" not in self.extras:
            raise ModiseError(f"inference.clip_ensemble needs a CLIP-style class head or captioner; preset "
                              f"'{self.config.preset}' has neither, so set inference.clip_ensemble: false.")
        padded = self.pad(images)
        ph, pw = padded.shape[-2:]
        was_training = self.training
        self.eval()
        try:
            out = self(padded)
            if ic.clip_ensemble:  # ODISE's PoolingCLIPHead (odise.py:292-323)
                from modise.model.clip_ensemble import geometric_ensemble

                seen = torch.ones(len(self.categories), dtype=torch.bool, device=padded.device)  # trained classes
                clip_logits = self.extras["clip_ensemble"](padded, out["pred_masks"])
                out["pred_logits"] = geometric_ensemble(out["pred_logits"].float(), clip_logits.float(), seen,
                                                        ic.ensemble_alpha, ic.ensemble_beta)
        finally:
            self.train(was_training)
        return [
            postprocess(out["pred_logits"][i], out["pred_masks"][i], (ph, pw), image_sizes[i], output_sizes[i],
                        self.categories, ic, compact=compact)
            for i in range(b)
        ]

    # ------------------------------------------------------------------ trainable / frozen
    def frozen_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = [*self.extras.values(), *self.backbone.frozen_modules()]
        if self.captioner is not None:
            mods.append(self.captioner.image_encoder)
        return mods

    def train(self, mode: bool = True) -> "MODISE":
        super().train(mode)
        for m in self.frozen_modules():
            m.eval()  # frozen parts stay in eval mode (no dropout, fixed norms)
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        own = dict(self.named_parameters())
        expected = {n for n, p in own.items() if p.requires_grad}
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise ModiseError(f"checkpoint does not fit this model: {len(missing)} missing and {len(unexpected)} "
                              f"unexpected weights (e.g. {sorted(missing or unexpected)[0]}).")
        with torch.no_grad():
            for n, v in state.items():
                if own[n].shape != v.shape:
                    raise ModiseError(f"checkpoint weight {n} has shape {tuple(v.shape)}, the model {tuple(own[n].shape)}.")
                own[n].copy_(v)

    def parameter_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.trainable_parameters())
        return {"total": total, "trainable": trainable, "frozen": total - trainable}

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.yaml + categories.json + model.safetensors (trainable weights only), atomically per file."""
        import yaml
        from safetensors.torch import save

        from modise.outputs import write_bytes_atomic, write_json_atomic

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(d / CONFIG_FILE, yaml.safe_dump(self.config.model_dump(), sort_keys=False).encode())
        write_json_atomic(d / CATEGORIES_FILE, [c.to_json() for c in self.categories])
        state = {k: v.contiguous() for k, v in self.trainable_state_dict().items()}
        write_bytes_atomic(d / WEIGHTS_FILE, save(state, metadata={"format": "pt", "preset": self.config.preset}))
        return d

    @classmethod
    def from_config(cls, config: ModelConfig, categories: list[Category] | None = None) -> "MODISE":
        """Build every part for ``config`` (:func:`modise.model.build_parts.build_parts`), in training mode."""
        from modise.model.build_parts import DEFAULT_CATEGORIES, build_parts

        categories = list(categories or DEFAULT_CATEGORIES)
        return cls(config, categories, **build_parts(config, categories)).train()

    @classmethod
    def from_pretrained(cls, directory: str | Path, random_weights: bool | None = None) -> "MODISE":
        """Rebuild frozen parts from the saved config's ids (or random, as saved) and load the trainable weights."""
        import yaml
        from safetensors.torch import load_file

        from modise.model.config import validate_config

        d = Path(directory)
        for name in (CONFIG_FILE, CATEGORIES_FILE, WEIGHTS_FILE):
            if not (d / name).is_file():
                raise ModiseError(f"{d / name}: not found; is '{d}' a folder written by save_pretrained?")
        data = yaml.safe_load((d / CONFIG_FILE).read_text())
        if random_weights is not None:
            data["random_weights"] = random_weights
        config = validate_config(data, source=str(d / CONFIG_FILE))
        categories = [Category.from_json(c) for c in json.loads((d / CATEGORIES_FILE).read_text())]
        model = cls.from_config(config, categories)
        model.load_trainable_state_dict(load_file(str(d / WEIGHTS_FILE)))
        return model
