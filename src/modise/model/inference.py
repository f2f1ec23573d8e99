"""Mask2Former's semantic / panoptic / instance inference (ported, not transformers' post-processors),
one implementation each, in :func:`postprocess` (Mask2Former's ``semantic_inference``,
``panoptic_inference`` and ``instance_inference``, mask2former/maskformer_model.py:280-284, 286-342,
344-380; their literal ports are the references in tests/test_pipeline.py).

Mask2Former's order (maskformer_model.py:221-226, 239-242; on whenever panoptic or instance
inference is, :149-153): mask logits are upsampled to the padded network input, the padding is cropped,
and the masks are resized bilinearly to the ORIGINAL image size (detectron2's ``sem_seg_postprocess``)
BEFORE semantic, panoptic and instance inference, which therefore all run at the original size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from modise.data.coco_records import encode_rle
from modise.data.panoptic import Category
from modise.model.config import InferenceConfig


def _assign_segments(labels: list[int], scores: torch.Tensor, areas: list[int], original_areas: list[int], shown: list[int],
                    categories: list[Category], overlap_threshold: float) -> tuple[torch.Tensor, list[dict]]:
    """Mask2Former's panoptic loop over the kept queries (maskformer_model.py:311-340): a query
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


def postprocess(cls: torch.Tensor, masks: torch.Tensor, padded_size: tuple[int, int], image_size: tuple[int, int],
                output_size: tuple[int, int], categories: list[Category], settings: InferenceConfig, chunk: int = 16, *,
                compact: bool = False) -> dict:
    """One image: cls [Q,K+1], masks [Q,h/4,w/4] logits of a padded input of ``padded_size`` whose
    image occupies the top-left ``image_size`` -> ``sem_seg`` [K,H,W], ``panoptic_seg`` (ids [H,W],
    segments), ``instances``, all at ``output_size`` (H, W), the original image size. ``settings``: the
    thresholds (``object_mask_threshold``, ``overlap_threshold``) and ``instances_per_image``.

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
    # panoptic: the non-void queries above the object-mask threshold (maskformer_model.py:287-291)
    scores, labels = probs.max(-1)
    keep = labels.ne(k) & (scores > settings.object_mask_threshold)
    # instances: the top-k (query, class) pairs, thing classes only (maskformer_model.py:349-368)
    top_scores, top_idx = class_prob.flatten(0, 1).topk(min(settings.instances_per_image, q * k), sorted=False)
    inst_labels, qi = top_idx % k, top_idx // k
    is_thing = torch.tensor([bool(c.isthing) for c in categories], dtype=torch.bool, device=cls.device)
    thing = is_thing[inst_labels]
    top_scores, inst_labels, qi = top_scores[thing], inst_labels[thing], qi[thing]
    picked = torch.zeros(q, dtype=torch.bool, device=cls.device)
    picked[qi] = True
    # semantic: class probabilities x mask probabilities summed over the queries (maskformer_model.py:280-284)
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
    buf = _Buffers(output_size, masks.device)
    for i in (keep | picked).nonzero().flatten().tolist():  # ascending: the kept masks' order in panoptic inference
        m = to_output_size(masks[i : i + 1], padded_size, image_size, output_size)[0]
        binm = torch.gt(m, 0, out=buf.binary if compact else None) if picked[i] else None
        prob = m.sigmoid_()  # in place: the logits are not needed any more
        if keep[i]:
            pan_state.add(torch.mul(prob, scores[i], out=buf.weighted), torch.ge(prob, 0.5, out=buf.confident))
        if binm is not None:
            # mean probability inside the binary mask (maskformer_model.py:377): sigmoid x the 0/1 mask as floats
            inside = torch.mul(prob, buf.inside.copy_(binm), out=buf.weighted)
            quality[i] = inside.sum() / (binm.count_nonzero() + 1e-6)
            binary[i] = encode_rle(binm) if compact else binm
        del m, prob, binm
    pan, segs = pan_state.finish(labels[keep], scores[keep], categories, settings.overlap_threshold)
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


class _Buffers:
    """Full-size scratch tensors reused for every query of one image (a fresh 13-Mpx tensor per step
    costs page faults on the CPU)."""

    def __init__(self, size: tuple[int, int], device: torch.device) -> None:
        self.weighted = torch.empty(size, dtype=torch.float32, device=device)
        self.confident = torch.empty(size, dtype=torch.bool, device=device)
        self.binary = torch.empty(size, dtype=torch.bool, device=device)
        self.inside = torch.empty(size, dtype=torch.float32, device=device)


class _PanopticAccumulator:
    """Mask2Former's ``panoptic_inference`` (maskformer_model.py:286-342) fed one kept query at a time
    (in query order): the running first argmax of score x probability, whether the winner is confident
    there (probability >= 0.5), and each query's confident area, so only one full-size mask is held at a
    time. The running maps are updated with arithmetic and bit operations, which are vectorised on the
    CPU where ``torch.where`` / ``masked_fill_`` on bool masks are not (3-5x slower at 13 Mpx)."""

    def __init__(self, size: tuple[int, int], n: int, device: torch.device) -> None:
        self.best = torch.full(size, -1.0, device=device)  # scores x probabilities are >= 0
        id_type = torch.uint8 if n <= 256 else torch.int32  # ids 0..n-1: a byte when they fit
        self.ids = torch.zeros(size, dtype=id_type, device=device)
        self.id_scratch = torch.empty(size, dtype=id_type, device=device)
        self.confident = torch.zeros(size, dtype=torch.bool, device=device)
        self.better = torch.empty(size, dtype=torch.bool, device=device)
        self.scratch = torch.empty(size, dtype=torch.uint8, device=device)
        self.original_areas: list[int] = []
        self.n = n

    def add(self, weighted: torch.Tensor, confident: torch.Tensor) -> None:
        q = len(self.original_areas)
        better = torch.gt(weighted, self.best, out=self.better)  # strict: ties keep the first query, as argmax does
        torch.maximum(self.best, weighted, out=self.best)
        # ids = where(better, q, ids) = max(ids, better * q): every id so far is below q
        flags = better.view(torch.uint8) if self.ids.dtype == torch.uint8 else self.id_scratch.copy_(better)
        torch.maximum(self.ids, torch.mul(flags, q, out=self.id_scratch), out=self.ids)
        # confident = where(better, confident, self.confident), on the bool maps' bytes
        mine, new, b = self.confident.view(torch.uint8), confident.view(torch.uint8), better.view(torch.uint8)
        mine.bitwise_xor_(torch.bitwise_xor(mine, new, out=self.scratch).bitwise_and_(b))
        self.original_areas.append(int(confident.count_nonzero()))

    def finish(self, labels: torch.Tensor, scores: torch.Tensor, categories: list[Category],
               overlap_threshold: float) -> tuple[torch.Tensor, list[dict]]:
        n = self.n
        if n == 0:
            return torch.zeros(self.ids.shape, dtype=torch.long, device=self.ids.device), []
        ids = self.ids.to(torch.int32)  # an index, not a byte mask
        areas = torch.bincount(ids.flatten(), minlength=n).tolist()
        shown = torch.bincount(ids[self.confident], minlength=n).tolist()  # pixels the query would paint
        lut, segments = _assign_segments(labels.tolist(), scores, areas, self.original_areas, shown, categories, overlap_threshold)
        pan = torch.where(self.confident, lut.to(ids.device)[ids], 0)
        areas = torch.bincount(pan.flatten(), minlength=len(segments) + 1).tolist()
        for seg in segments:
            seg["area"] = areas[seg["id"]]
        return pan, segments


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
