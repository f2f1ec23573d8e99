"""Typed model configuration and the YAML presets of the paper's Table 1.

A preset file (``modise/presets/<name>.yaml``) names the parts (``parts:``) and the
per-size dimensions (``full:`` / ``tiny:``); :func:`load_preset` deep-merges
``parts`` <- ``<size>`` <- user ``overrides`` and validates the result, refusing
unknown keys with one clear sentence. The folder is the list of presets: every
``*.yaml`` in it is one (:mod:`modise.model.presets`), placed by its ``order:`` (Table 1's rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modise.errors import ModiseError
from modise.model.presets import preset_names, preset_path, read_yaml

SIZES = ("full", "tiny")
MAX_SIZE_RATIO = 2.5  # ODISE tests at shortest edge 1024, longest at most 2560 (coco_panoptic_semseg.py:66)


def __getattr__(name: str) -> Any:
    if name == "PRESETS":  # the presets folder, read on each use (modise.model.presets.preset_names)
        return preset_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DiffusionConfig(_Strict):
    """Feature backbone: a frozen SD-1.x-style diffusion model (``sd``) or a Swin (``swin``)."""

    kind: Literal["sd", "swin"] = "sd"
    model_id: str = "Likalto4/fusion_healthy"  # diffusers repo id or local folder (vae/, unet/, text_encoder/)
    projection_dim: int = 512  # width of the per-tap bottleneck projections (bottleneck: a quarter of it)
    # ODISE windows (feature_extractor.py:139-250): square windows of side min(window_size, internal_size,
    # short side), stride = side (no overlap but the last, flush window), each resized to ``internal_size``
    # before the VAE/UNet (ODISE's backbone_in_size=512 is both). ODISE trains on 1024 LSJ crops with slide
    # training and tests at shortest edge 1024 (configs/common/data/coco_panoptic_semseg.py:46-71).
    window_size: int = 512
    internal_size: int | None = None  # None: the diffusion model's native size (VAE sample_size; 512 for SD-1.x)
    slide_training: bool = True  # also slide while training; off: one window of the short side
    window_batch: int = 16  # windows (of all images of a batch) per UNet call; 0 = all at once
    checkpoint_projection: bool = True  # ODISE use_checkpoint: recompute the projections in backward
    frozen_precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 frozen weights on a CUDA GPU
    channels_last: bool = True  # VAE/UNet in channels_last when their weights are bf16 on a GPU
    compile: bool = False  # torch.compile the frozen UNet (off until it measures faster)
    trainable: bool = False  # only for ``swin``: fine-tune the backbone like Mask2Former


class CaptionerConfig(_Strict):
    """Implicit captioner: frozen image encoder -> gated PositionalLinear added to the empty prompt (ODISE ldm.py:624-714)."""

    encoder: Literal["none", "clip", "biomedclip"] = "biomedclip"
    model_id: str | None = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    # ODISE turns the gated time-embedding path on (configs/common/models/odise_with_label.py:22).
    time_embedding: bool = True


class ClassHeadConfig(_Strict):
    """Open-vocabulary head (ODISE's PooledMaskEmbed + CategoryEmbed) or a plain linear classifier (m2f-*)."""

    kind: Literal["linear", "clip", "biomedclip"] = "biomedclip"
    model_id: str | None = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    # Used for categories without their own prompts; ODISE's CategoryEmbed encodes the raw label (prompt=None).
    prompt_template: str = "{}"
    projection_dim: int | None = None  # width of the mask/text embedding space; None = hidden_dim (ODISE: mask_dim 256)
    init_logit_scale: float = 2.659  # log(1/0.07): PooledMaskEmbed's temperature 0.07


class LossConfig(_Strict):
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    void_weight: float = 0.1
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    deep_supervision: bool = True


class InferenceConfig(_Strict):
    """Inference settings saved with the weights (the one place that owns them).

    ODISE: object_mask_threshold 0.0, overlap 0.8 (configs/common/models/mask_generator_with_label.py:91-92);
    Mask2Former: 0.8 / 0.8 (configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml TEST).
    The geometric ensemble with a mask-pooled CLIP classifier is ODISE's PoolingCLIPHead
    (odise/modeling/meta_arch/odise.py:1422-1542, alpha 0.3 / beta 0.7 from odise_with_label.py:31-32).
    """

    # The test resize (ODISE configs/common/data/coco_panoptic_semseg.py:66: ResizeShortestEdge 1024, max_size
    # 2560): the shortest edge goes to ``image_size`` unless the longest would exceed ``max_size``.
    image_size: int | None = None  # None: ModelConfig.input_size (the training crop; ODISE 1024 for both)
    max_size: int | None = None  # None: 2.5 x image_size (ODISE: 2560 for 1024)
    object_mask_threshold: float = 0.8
    overlap_threshold: float = 0.8
    instances_per_image: int = 100
    clip_ensemble: bool = False  # p^(1-a) * p_clip^a over the foreground classes (needs a CLIP captioner/class head)
    ensemble_alpha: float = 0.3  # weight of the CLIP classifier for classes seen in training
    ensemble_beta: float = 0.7  # ... for classes not seen in training
    ensemble_prompt_template: str = "a photo of a {}."  # PoolingCLIPHead's prompt="photo" (for bare category names)

    def replace(self, **overrides: Any) -> "InferenceConfig":
        """A validated copy with ``overrides`` (``None`` values keep) replaced; a clear error for an
        unknown name or a bad value."""
        over = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(over) - set(type(self).model_fields)
        if unknown:
            raise ModiseError(f"Unknown inference setting(s) {sorted(unknown)}; the settings are "
                              f"{', '.join(type(self).model_fields)}.")
        if not over:
            return self
        try:
            return type(self).model_validate({**self.model_dump(), **over})
        except ValidationError as e:
            raise ModiseError(f"Invalid inference setting(s): {_errors(e)}.") from None

    def resolved(self, input_size: int) -> "InferenceConfig":
        """The sizes filled in: ``image_size`` (else the training ``input_size``) and ``max_size`` (else
        ``MAX_SIZE_RATIO`` x image_size); what one call runs with and records."""
        image_size = self.image_size or input_size
        max_size = int(self.max_size or round(MAX_SIZE_RATIO * image_size))
        if image_size < 32 or max_size < image_size:
            raise ModiseError(f"Inference image_size {image_size} / max_size {max_size}: need 32 <= image_size <= max_size.")
        return self.model_copy(update={"image_size": image_size, "max_size": max_size})

    def record(self) -> dict[str, Any]:
        """The settings that shape the written result (``panoptic.json``'s ``info``)."""
        return self.model_dump(include={"image_size", "max_size", "object_mask_threshold", "overlap_threshold"})


class OptimizerConfig(_Strict):
    """Per-parameter optimiser groups and warm-up (AdamW's lr / weight decay come from the training run).

    ODISE: detectron2's get_default_optimizer_params with weight_decay_norm=0 and weight_decay_bias=0
    (configs/common/optim.py:23-29); linear warm-up from 0.067 over 500/184375 of the run
    (configs/Panoptic/odise_label_coco_50e.py:31-43). Mask2Former (train_net.py build_optimizer):
    backbone lr x 0.1, no decay on norms, nn.Embedding and Swin position tables, biases decayed;
    WARMUP_FACTOR 1.0 (no warm-up).
    """

    weight_decay_norm: float | None = 0.0  # None: the run's weight decay
    weight_decay_bias: float | None = 0.0
    weight_decay_embed: float | None = None
    backbone_lr_multiplier: float = 1.0  # parameters under ``backbone.`` (a trainable Swin; the SD projections)
    warmup_fraction: float = 500 / 184375  # of the run's steps
    warmup_factor: float = 0.067


class ModelConfig(_Strict):
    """Everything needed to rebuild a model (saved as ``config.yaml`` next to its weights)."""

    preset: str = "m-odise"
    size: Literal["full", "tiny"] = "full"
    random_weights: bool = False  # build frozen parts with seeded random weights (offline architectures)
    diffusion: DiffusionConfig = DiffusionConfig()
    captioner: CaptionerConfig = CaptionerConfig()
    class_head: ClassHeadConfig = ClassHeadConfig()
    num_queries: int = 100
    hidden_dim: int = 256
    dec_layers: int = 9  # masked-attention decoder layers (transformers' decoder_layers = this + 1)
    enc_layers: int = 6  # deformable-attention layers of the pixel decoder
    nheads: int = 8
    dim_feedforward: int = 2048
    enc_feedforward: int = 1024
    input_size: int = 1024  # training crop (LSJ) and, unless inference.image_size says otherwise, the test shortest edge
    # Images are zero-padded (bottom/right) to a multiple of this before the backbone, in training and at test
    # time: Mask2Former 32 (mask2former/config.py:64), ODISE 64 (configs/common/models/mask_generator_with_label.py:94,
    # odise/modeling/backbone/feature_extractor.py:127). It moves where the sliding windows fall on a padded image.
    size_divisibility: int = Field(32, gt=0, multiple_of=32)
    noise_seed: int = 42  # seed of the one shared t=0 diffusion noise map (ODISE ldm.py:271)
    seed: int = 0  # seed of random frozen weights (random_weights / tiny)
    loss: LossConfig = LossConfig()
    inference: InferenceConfig = InferenceConfig()
    optimizer: OptimizerConfig = OptimizerConfig()

    def inference_settings(self, **overrides: Any) -> InferenceConfig:
        """``inference`` with ``overrides`` replaced and its sizes resolved against ``input_size``."""
        return self.inference.replace(**overrides).resolved(self.input_size)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def validate_config(data: dict[str, Any], source: str = "config") -> ModelConfig:
    """Validate a plain dict, turning pydantic's report into one sentence."""
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as e:
        raise ModiseError(f"{source}: invalid model configuration ({_errors(e)}).") from None


def _errors(e: ValidationError) -> str:
    """pydantic's report as one line: ``field.path: message; ...``."""
    return "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())


def load_preset(name: str = "m-odise", size: str = "tiny", overrides: dict[str, Any] | None = None) -> ModelConfig:
    """Validated config of preset ``name`` at ``size`` (``full``|``tiny``) with ``overrides`` deep-merged."""
    if size not in SIZES:
        raise ModiseError(f"Unknown size '{size}'; choose 'full' or 'tiny'.")
    path = preset_path(name)
    data = read_yaml(path)
    unknown = set(data) - {"description", "order", "parts", *SIZES}
    if unknown:
        raise ModiseError(f"{path}: unknown top-level key(s) {sorted(unknown)}; expected description, order, parts, full, tiny.")
    merged = _deep_merge(data.get("parts") or {}, data.get(size) or {})
    merged = _deep_merge(merged, {"preset": data.get("parts", {}).get("preset", Path(name).stem), "size": size})
    merged = _deep_merge(merged, overrides or {})
    return validate_config(merged, source=str(path))
