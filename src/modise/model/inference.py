"""Mask2Former's semantic / panoptic / instance inference (ported, not transformers' post-processors).

Mask2Former's order (mask2former/maskformer_model.py:221-226, 239-242; on whenever panoptic or instance
inference is, :149-153): mask logits are upsampled to the padded network input, the padding is cropped,
and the masks are resized bilinearly to the ORIGINAL image size (detectron2's ``sem_seg_postprocess``)
BEFORE semantic, panoptic and instance inference, which therefore all run at the original size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modise.data.panoptic import Category


def semantic_inference(cls: torch.Tensor, masks: torch.Tensor, mask_prob: torch.Tensor | None = None) -> torch.Tensor:
    """cls [Q,K+1] logits, masks [Q,H,W] logits (or their sigmoid ``mask_prob``) -> per-class probability maps [K,H,W]."""
    return torch.einsum("qc,qhw->chw", cls.softmax(-1)[..., :-1], masks.sigmoid() if mask_prob is None else mask_prob)


def panoptic_inference(cls: torch.Tensor, masks: torch.Tensor, categories: list[Category], object_mask_threshold: float,
                       overlap_threshold: float, mask_prob: torch.Tensor | None = None) -> tuple[torch.Tensor, list[dict]]:
    """-> (segment ids [H,W], 0 = background; segments_info). Stuff of one class is merged
    (maskformer_model.py panoptic_inference; areas counted for all queries at once)."""
    k = cls.shape[-1] - 1
    scores, labels = cls.softmax(-1).max(-1)
    keep = labels.ne(k) & (scores > object_mask_threshold)
    cur_scores, cur_classes = scores[keep], labels[keep]
    cur_masks = (masks.sigmoid() if mask_prob is None else mask_prob)[keep]
    h, w = masks.shape[-2:]
    panoptic = torch.zeros((h, w), dtype=torch.long, device=masks.device)
    segments: list[dict] = []
    n = cur_masks.shape[0]
    if n == 0:
        return panoptic, segments
    mask_ids = (cur_scores.view(-1, 1, 1) * cur_masks).max(0).indices  # = argmax(0) (first max), faster on CPU
    confident = cur_masks >= 0.5
    areas = torch.bincount(mask_ids.flatten(), minlength=n).tolist()
    original_areas = confident.flatten(1).count_nonzero(1).tolist()
    stuff_ids: dict[int, int] = {}
    for q, label in enumerate(cur_classes.tolist()):
        isthing = bool(categories[label].isthing)
        if areas[q] == 0 or original_areas[q] == 0 or areas[q] / original_areas[q] < overlap_threshold:
            continue
        mask = (mask_ids == q) & confident[q]
        if not bool(mask.any()):
            continue
        if not isthing and label in stuff_ids:
            panoptic[mask] = stuff_ids[label]
            continue
        seg_id = len(segments) + 1
        if not isthing:
            stuff_ids[label] = seg_id
        panoptic[mask] = seg_id
        segments.append(dict(id=seg_id, category_id=categories[label].id, label=label, score=float(cur_scores[q]),
                             area=0, isthing=isthing))
    return panoptic, segments


def instance_inference(cls: torch.Tensor, masks: torch.Tensor, categories: list[Category], topk: int,
                       mask_prob: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """cls [Q,K+1], masks [Q,H,W] logits -> top-k (query, class) pairs scored by class prob x mask quality
    (maskformer_model.py:344-380): ``masks`` [N,H,W] bool, ``labels`` [N], ``scores`` [N], best first.
    The mean mask probability inside the mask is computed once per query, then gathered per pair."""
    q, k = cls.shape[0], cls.shape[-1] - 1
    scores = cls.softmax(-1)[:, :-1]
    labels = torch.arange(k, device=cls.device).unsqueeze(0).repeat(q, 1).flatten(0, 1)
    top_scores, top_idx = scores.flatten(0, 1).topk(min(topk, q * k), sorted=False)
    labels = labels[top_idx]
    qi = top_idx // k
    is_thing = torch.tensor([bool(c.isthing) for c in categories], dtype=torch.bool, device=cls.device)
    thing = is_thing[labels]
    top_scores, labels, qi = top_scores[thing], labels[thing], qi[thing]
    binm = masks > 0
    prob = masks.sigmoid() if mask_prob is None else mask_prob
    per_query = (prob * binm).flatten(1).sum(1) / (binm.flatten(1).count_nonzero(1) + 1e-6)
    final = top_scores * per_query[qi]
    order = final.argsort(descending=True)
    return {"masks": binm[qi[order]], "labels": labels[order], "scores": final[order]}


def postprocess(cls: torch.Tensor, masks: torch.Tensor, padded_size: tuple[int, int], image_size: tuple[int, int],
                output_size: tuple[int, int], categories: list[Category], object_mask_threshold: float,
                overlap_threshold: float, topk: int, chunk: int = 16) -> dict:
    """One image: cls [Q,K+1], masks [Q,h/4,w/4] logits of a padded input of ``padded_size`` whose
    image occupies the top-left ``image_size`` -> ``sem_seg`` [K,H,W], ``panoptic_seg`` (ids [H,W],
    segments), ``instances``, all at ``output_size`` (H, W), the original image size.

    The same numbers as running the three inferences on all Q masks at the original size, without
    holding Q full-size float masks at once (100 x 3328 x 4096 floats are 5.4 GB): the semantic maps
    and each query's mask quality are summed over ``chunk`` queries at a time, and only the queries
    the panoptic map keeps and the top-k instances pick are resized in full.
    """
    cls = cls.float()
    q, k = cls.shape[0], cls.shape[-1] - 1
    class_prob = cls.softmax(-1)[:, :-1]
    sem = torch.zeros((k, *output_size), dtype=torch.float32, device=masks.device)
    quality = torch.zeros(q, dtype=torch.float32, device=masks.device)  # mean probability inside each mask
    for s in range(0, q, chunk):
        m = to_output_size(masks[s : s + chunk], padded_size, image_size, output_size)
        prob = m.sigmoid()
        sem += torch.einsum("qc,qhw->chw", class_prob[s : s + chunk], prob)
        binm = m > 0
        quality[s : s + chunk] = (prob * binm).flatten(1).sum(1) / (binm.flatten(1).count_nonzero(1) + 1e-6)
        del m, prob, binm
    scores, labels = cls.softmax(-1).max(-1)
    keep = labels.ne(k) & (scores > object_mask_threshold)
    kept = _resize_some(masks[keep], padded_size, image_size, output_size)
    pan, segs = panoptic_inference(cls[keep], kept, categories, object_mask_threshold, overlap_threshold)
    del kept
    areas = torch.bincount(pan.flatten(), minlength=len(segs) + 1).tolist()
    for seg in segs:
        seg["area"] = areas[seg["id"]]
    return {"sem_seg": sem, "panoptic_seg": (pan, segs), "instances": _top_instances(cls, masks, quality, categories, topk,
                                                                                   (padded_size, image_size, output_size))}


def _top_instances(cls: torch.Tensor, masks: torch.Tensor, quality: torch.Tensor, categories: list[Category], topk: int,
                   sizes: tuple) -> dict[str, torch.Tensor]:
    """:func:`instance_inference` with each query's mask quality given; only the picked queries' masks are resized."""
    q, k = cls.shape[0], cls.shape[-1] - 1
    top_scores, top_idx = cls.softmax(-1)[:, :-1].flatten(0, 1).topk(min(topk, q * k), sorted=False)
    labels, qi = top_idx % k, top_idx // k
    is_thing = torch.tensor([bool(c.isthing) for c in categories], dtype=torch.bool, device=cls.device)
    thing = is_thing[labels]
    top_scores, labels, qi = top_scores[thing], labels[thing], qi[thing]
    final = top_scores * quality[qi]
    order = final.argsort(descending=True)
    picked, index = qi[order].unique(return_inverse=True)
    binm = _resize_some(masks[picked], *sizes) > 0
    return {"masks": binm[index], "labels": labels[order], "scores": final[order]}


def _resize_some(masks: torch.Tensor, padded_size, image_size, output_size) -> torch.Tensor:
    """:func:`to_output_size` that also takes no masks at all ([0,h,w] -> [0,H,W])."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *output_size), dtype=torch.float32)
    return to_output_size(masks, padded_size, image_size, output_size)


def to_output_size(masks: torch.Tensor, padded_size: tuple[int, int], image_size: tuple[int, int],
                   output_size: tuple[int, int]) -> torch.Tensor:
    """masks [Q,h,w] logits -> [Q,*output_size] float: upsampled to the padded input
    (maskformer_model.py:221-226), padding cropped, resized to the original size (:239-242, detectron2's
    sem_seg_postprocess: crop then bilinear, align_corners False)."""
    masks = F.interpolate(masks[None].float(), size=tuple(padded_size), mode="bilinear", align_corners=False)[0]
    masks = masks[:, : image_size[0], : image_size[1]]
    if tuple(output_size) != tuple(masks.shape[-2:]):
        masks = F.interpolate(masks[None], size=tuple(output_size), mode="bilinear", align_corners=False)[0]
    return masks
