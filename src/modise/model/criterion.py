"""Mask2Former's set criterion (transformers' ``Mask2FormerLoss``), weighted and deep-supervised.

Hungarian matching on class + point-sampled BCE/Dice costs (in fp32, as Mask2Former); class CE with void weight 0.1;
BCE and Dice on ``num_points`` importance-sampled points. The number of masks is all-reduced
over ``torch.distributed`` (transformers does so only under accelerate), so DDP ranks
normalise alike.
"""

from __future__ import annotations

import torch
from torch import nn

from modise.model.config import LossConfig


class _Float32Matcher(nn.Module):
    """The Hungarian matcher's costs in fp32 under mixed precision, as Mask2Former computes them
    (``matcher.py:134-141``: ``autocast(enabled=False)``, masks ``.float()``)."""

    def __init__(self, matcher: nn.Module) -> None:
        super().__init__()
        self.matcher = matcher

    @torch.no_grad()
    def forward(self, masks_queries_logits, class_queries_logits, mask_labels, class_labels):
        with torch.autocast(masks_queries_logits.device.type, enabled=False):
            return self.matcher(masks_queries_logits.float(), class_queries_logits.float(),
                                [m.float() for m in mask_labels], class_labels)


def _make_loss_cls():
    from modise.compat import mask2former_loss_class

    class _DistributedMask2FormerLoss(mask2former_loss_class()):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.matcher = _Float32Matcher(self.matcher)

        def get_num_masks(self, class_labels, device):
            num = torch.as_tensor(float(sum(len(c) for c in class_labels)), device=device)
            world = 1
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(num)
                world = torch.distributed.get_world_size()
            return torch.clamp(num / world, min=1)

    return _DistributedMask2FormerLoss


class SetCriterion(nn.Module):
    """outputs {"pred_logits" [B,Q,K+1], "pred_masks" [B,Q,h,w], "aux_outputs"}, targets
    [{"labels" [n], "masks" [n,H,W]}] -> {"loss", "loss_ce", "loss_mask", "loss_dice", "loss_ce_0", ...}."""

    def __init__(self, num_classes: int, cfg: LossConfig) -> None:
        super().__init__()
        from transformers import Mask2FormerConfig

        m2f = Mask2FormerConfig(num_labels=num_classes, no_object_weight=cfg.void_weight, class_weight=cfg.class_weight,
                                mask_weight=cfg.mask_weight, dice_weight=cfg.dice_weight, train_num_points=cfg.num_points,
                                oversample_ratio=cfg.oversample_ratio, importance_sample_ratio=cfg.importance_sample_ratio)
        self.cfg = cfg
        self.loss = _make_loss_cls()(m2f, weight_dict={})
        self.weights = {"loss_ce": cfg.class_weight, "loss_mask": cfg.mask_weight, "loss_dice": cfg.dice_weight}

    def _one(self, logits: torch.Tensor, masks: torch.Tensor, tgt_masks, tgt_labels) -> dict[str, torch.Tensor]:
        r = self.loss(masks_queries_logits=masks, class_queries_logits=logits, mask_labels=tgt_masks, class_labels=tgt_labels)
        return {"loss_ce": r["loss_cross_entropy"], "loss_mask": r["loss_mask"], "loss_dice": r["loss_dice"]}

    def forward(self, outputs: dict, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        dev = outputs["pred_masks"].device
        h, w = targets[0]["masks"].shape[-2:] if len(targets) else outputs["pred_masks"].shape[-2:]
        tgt_masks, tgt_labels = [], []
        for t in targets:
            m = t["masks"].to(dev, torch.float32)
            tgt_masks.append(m if m.numel() or m.dim() == 3 else m.reshape(0, h, w))
            tgt_labels.append(t["labels"].to(dev, torch.long))
        levels = [outputs] + (list(outputs.get("aux_outputs", [])) if self.cfg.deep_supervision else [])
        losses: dict[str, torch.Tensor] = {}
        total = outputs["pred_masks"].new_zeros(())
        for i, lvl in enumerate(levels):
            parts = self._one(lvl["pred_logits"], lvl["pred_masks"], tgt_masks, tgt_labels)
            suffix = "" if i == 0 else f"_{i - 1}"
            for k, v in parts.items():
                losses[k + suffix] = v.detach()
                total = total + self.weights[k] * v
        losses["loss"] = total
        return losses
