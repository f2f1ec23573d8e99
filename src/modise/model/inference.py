"""Mask2Former's semantic / panoptic / instance inference (ported, not transformers' post-processors).

Mask2Former's order (mask2former/maskformer_model.py:221-226, 239-242; on whenever panoptic or instance
inference is, :149-153): mask logits are upsampled to the padded network input, the padding is cropped,
and the masks are resized bilinearly to the ORIGINAL image size (detectron2's ``sem_seg_postprocess``)
BEFORE semantic, panoptic and instance inference, which therefore all run at the original size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
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
    winner_confident = confident.gather(0, mask_ids[None])[0]
    areas = torch.bincount(mask_ids.flatten(), minlength=n).tolist()
    shown = torch.bincount(mask_ids[winner_confident], minlength=n).tolist()  # = ((mask_ids == q) & confident[q]).sum()
    lut, segments = assign_segments(cur_classes.tolist(), cur_scores, areas, confident.flatten(1).count_nonzero(1).tolist(),
                                    shown, categories, overlap_threshold)
    return torch.where(winner_confident, lut.to(masks.device)[mask_ids], 0), segments


def assign_segments(labels: list[int], scores: torch.Tensor, areas: list[int], original_areas: list[int], shown: list[int],
                    categories: list[Category], overlap_threshold: float) -> tuple[torch.Tensor, list[dict]]:
    """Mask2Former's panoptic loop over the kept queries (maskformer_model.py panoptic_inference): a query
    whose argmax area is too small a part of its confident area, or that paints nothing, is dropped; stuff
    of one class is merged. -> (segment id per query [n] (0: dropped), segments_info)."""
    lut = torch.zeros(len(labels), dtype=torch.long, device=scores.device)
    segments: list[dict] = []
    stuff_ids: dict[int, int] = {}
    for q, label in enumerate(labels):
        isthing = bool(categories[label].isthing)
        if areas[q] == 0 or original_areas[q] == 0 or areas[q] / original_areas[q] < overlap_threshold:
            continue
        if shown[q] == 0:
            continue
        if not isthing and label in stuff_ids:
            lut[q] = stuff_ids[label]
            continue
        seg_id = len(segments) + 1
        if not isthing:
            stuff_ids[label] = seg_id
        lut[q] = seg_id
        segments.append(dict(id=seg_id, category_id=categories[label].id, label=label, score=float(scores[q]),
                             area=0, isthing=isthing))
    return lut, segments


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
                overlap_threshold: float, topk: int, chunk: int = 16, *, compact: bool = False) -> dict:
    """One image: cls [Q,K+1], masks [Q,h/4,w/4] logits of a padded input of ``padded_size`` whose
    image occupies the top-left ``image_size`` -> ``sem_seg`` [K,H,W], ``panoptic_seg`` (ids [H,W],
    segments), ``instances``, all at ``output_size`` (H, W), the original image size.

    The same numbers as running the three inferences on all Q masks at the original size, without
    holding Q full-size float masks at once (100 x 3328 x 4096 floats are 5.4 GB): only the queries the
    panoptic map keeps and the top-k instances pick are resized to full size, one at a time, and each
    is used for both there and then. ``compact``: what ``modise predict`` writes, in memory independent of
    Q: ``sem_seg`` at the inference resolution (``image_size``; semantic inference on the cropped
    masks), instances as full-size COCO RLE (``instances["rles"]``) with ``masks`` at the inference
    resolution (for drawing). Otherwise ``sem_seg`` is summed at full size over ``chunk`` queries at a time.
    """
    cls = cls.float()
    q, k = cls.shape[0], cls.shape[-1] - 1
    probs = cls.softmax(-1)
    class_prob = probs[:, :-1]
    scores, labels = probs.max(-1)
    keep = labels.ne(k) & (scores > object_mask_threshold)
    # Mask2Former's instance pairs (maskformer_model.py:344-380): top-k (query, class), thing classes only
    top_scores, top_idx = class_prob.flatten(0, 1).topk(min(topk, q * k), sorted=False)
    inst_labels, qi = top_idx % k, top_idx // k
    is_thing = torch.tensor([bool(c.isthing) for c in categories], dtype=torch.bool, device=cls.device)
    thing = is_thing[inst_labels]
    top_scores, inst_labels, qi = top_scores[thing], inst_labels[thing], qi[thing]
    picked = torch.zeros(q, dtype=torch.bool, device=cls.device)
    picked[qi] = True
    if compact:
        small = _crop(masks, padded_size, image_size)
        sem = torch.einsum("qc,qhw->chw", class_prob, small.sigmoid())
    else:
        sem = torch.zeros((k, *output_size), dtype=torch.float32, device=masks.device)
        for s in range(0, q, chunk):
            sem += torch.einsum("qc,qhw->chw", class_prob[s : s + chunk],
                                to_output_size(masks[s : s + chunk], padded_size, image_size, output_size).sigmoid())
    pan_state = _PanopticAccumulator(output_size, int(keep.sum()), masks.device)
    quality = torch.zeros(q, dtype=torch.float32, device=masks.device)  # mean probability inside each mask
    binary: dict[int, Any] = {}  # picked query -> its full-size binary mask (RLE when compact)
    for i in (keep | picked).nonzero().flatten().tolist():  # ascending: the kept masks' order in panoptic inference
        m = to_output_size(masks[i : i + 1], padded_size, image_size, output_size)[0]
        binm = m > 0 if picked[i] else None
        prob = m.sigmoid_()  # in place: m is not needed any more
        if keep[i]:
            pan_state.add(prob * scores[i], prob >= 0.5)
        if binm is not None:
            quality[i] = torch.where(binm, prob, 0.0).sum() / (binm.count_nonzero() + 1e-6)
            binary[i] = encode_rle(binm) if compact else binm
        del m, prob, binm
    pan, segs = pan_state.finish(labels[keep], scores[keep], categories, overlap_threshold)
    final = top_scores * quality[qi]
    order = final.argsort(descending=True)
    qi, inst_labels, final = qi[order], inst_labels[order], final[order]
    if compact:
        inst = {"masks": small[qi] > 0, "rles": [binary[i] for i in qi.tolist()], "labels": inst_labels, "scores": final}
    elif len(qi):
        inst = {"masks": torch.stack([binary[i] for i in qi.tolist()]), "labels": inst_labels, "scores": final}
    else:
        inst = {"masks": torch.zeros((0, *output_size), dtype=torch.bool, device=masks.device), "labels": inst_labels,
                "scores": final}
    return {"sem_seg": sem, "panoptic_seg": (pan, segs), "instances": inst}


class _PanopticAccumulator:
    """:func:`panoptic_inference` fed one kept query at a time (in query order): the running first
    argmax of score x probability, whether the winner is confident there (probability >= 0.5), and each
    query's confident area, so only one full-size mask is held at a time."""

    def __init__(self, size: tuple[int, int], n: int, device: torch.device) -> None:
        self.best = torch.full(size, -1.0, device=device)  # scores x probabilities are >= 0
        self.ids = torch.zeros(size, dtype=torch.int32, device=device)  # int32: a quarter of the memory traffic of long
        self.confident = torch.zeros(size, dtype=torch.bool, device=device)
        self.original_areas: list[int] = []
        self.n = n

    def add(self, weighted: torch.Tensor, confident: torch.Tensor) -> None:
        q = len(self.original_areas)
        better = weighted > self.best  # strict: ties keep the first query, as argmax does
        torch.maximum(self.best, weighted, out=self.best)
        self.ids.masked_fill_(better, q)
        self.confident = torch.where(better, confident, self.confident)
        self.original_areas.append(int(confident.count_nonzero()))

    def finish(self, labels: torch.Tensor, scores: torch.Tensor, categories: list[Category],
               overlap_threshold: float) -> tuple[torch.Tensor, list[dict]]:
        n = self.n
        if n == 0:
            return torch.zeros(self.ids.shape, dtype=torch.long, device=self.ids.device), []
        areas = torch.bincount(self.ids.flatten(), minlength=n).tolist()
        shown = torch.bincount(self.ids[self.confident], minlength=n).tolist()  # pixels the query would paint
        lut, segments = assign_segments(labels.tolist(), scores, areas, self.original_areas, shown, categories, overlap_threshold)
        pan = torch.where(self.confident, lut.to(self.ids.device)[self.ids], 0)
        areas = torch.bincount(pan.flatten(), minlength=len(segments) + 1).tolist()
        for seg in segments:
            seg["area"] = areas[seg["id"]]
        return pan, segments


def encode_rle(mask: torch.Tensor) -> dict[str, Any]:
    """A bool [H, W] tensor (any device) -> COCO RLE with text ``counts``, as
    :func:`modise.engine.evaluation.instances.encode_mask` writes it (column-major: transposed on the device)."""
    from pycocotools import mask as mask_utils

    fortran = mask.t().contiguous().cpu().numpy().view(np.uint8).T  # a Fortran-ordered [H, W] view
    rle = mask_utils.encode(fortran)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _crop(masks: torch.Tensor, padded_size: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """masks [Q,h,w] logits -> [Q,*image_size]: upsampled to the padded input, padding cropped (the
    inference resolution)."""
    masks = F.interpolate(masks[None].float(), size=tuple(padded_size), mode="bilinear", align_corners=False)[0]
    return masks[:, : image_size[0], : image_size[1]]


def to_output_size(masks: torch.Tensor, padded_size: tuple[int, int], image_size: tuple[int, int],
                   output_size: tuple[int, int]) -> torch.Tensor:
    """masks [Q,h,w] logits -> [Q,*output_size] float: upsampled to the padded input
    (maskformer_model.py:221-226), padding cropped, resized to the original size (:239-242, detectron2's
    sem_seg_postprocess: crop then bilinear, align_corners False)."""
    masks = _crop(masks, padded_size, image_size)
    if tuple(output_size) != tuple(masks.shape[-2:]):
        masks = F.interpolate(masks[None], size=tuple(output_size), mode="bilinear", align_corners=False)[0]
    return masks
