"""Multi-scale deformable attention's sampling as one weighted gather (inference on the CPU).

The pixel decoder's deformable attention reads, for every query and head, ``L x P`` bilinear samples
of the value map and sums them with the attention weights. transformers (as Mask2Former's own
``ms_deform_attn_core_pytorch``, ``ms_deform_attn_func.py:52-72``, the path the original takes on a
CPU) does this with one ``grid_sample`` per level, a stack and a weighted sum: four passes over a
[B*H, C, Q, L*P] tensor. Mask2Former's CUDA kernel instead reads the four neighbours of each sample
straight from the [B, S, H, C] value tensor and adds them with bilinear x attention weights
(``ms_deform_im2col_cuda.cuh:38-85``, sample position ``loc * size - 0.5``, lines 290-293;
neighbours outside the map read 0). :func:`sample_deformable` is that formulation in
``F.embedding_bag``: the value tensor is the table, each (query, head) is a bag of ``L x P x 4``
rows, and the product of the bilinear and attention weights is the per-row weight. The result
equals transformers' function to float rounding (``tests/test_deformable_sampling.py``); on one CPU
thread at 512² it is 4-5x faster (``docs/benchmarks.md``).

It is used where it was measured: on the CPU with no autograd recording (``compat.route_deformable_sampling``
keeps transformers' function for training, where its backward is faster on small maps, and on
GPUs, where it has not been timed).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def sample_deformable(value: torch.Tensor, spatial_shapes: Sequence[Sequence[int]] | torch.Tensor,
                      sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
    """value [B,S,H,C] (levels' maps flattened and concatenated, S = sum h*w), spatial_shapes [L,2]
    (h, w), sampling_locations [B,Q,H,L,P,2] (x, y in [0,1]), attention_weights [B,Q,H,L,P]
    -> [B,Q,H*C], as ``multi_scale_deformable_attention`` (grid_sample, bilinear, zero padding,
    ``align_corners=False``)."""
    b, s, heads, c = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in (spatial_shapes.tolist() if torch.is_tensor(spatial_shapes) else spatial_shapes)]
    dev = value.device
    loc = sampling_locations.float()  # positions in fp32 whatever the value's dtype (bf16 would move them)
    attn = attention_weights.float()
    # Row of (batch, position, head) in value viewed as [B*S*H, C]; the head and batch part per bag.
    head_row = (torch.arange(heads, device=dev).view(1, 1, heads, 1)
                + torch.arange(b, device=dev).view(b, 1, 1, 1) * (s * heads))
    rows, weights, start = [], [], 0
    for lvl, (h, w) in enumerate(shapes):
        x = loc[:, :, :, lvl, :, 0] * w - 0.5  # [B,Q,H,P] pixel position (ms_deform_im2col_cuda.cuh:290-291)
        y = loc[:, :, :, lvl, :, 1] * h - 0.5
        x0, y0 = x.floor(), y.floor()
        fx, fy = x - x0, y - y0
        a = attn[:, :, :, lvl]
        # Per axis: (neighbour index clamped into the map, its weight; 0 outside the map).
        xs = ((x0.clamp(0, w - 1), (1 - fx) * ((x0 >= 0) & (x0 <= w - 1))),
              ((x0 + 1).clamp(0, w - 1), fx * ((x0 >= -1) & (x0 <= w - 2))))
        ys = ((y0.clamp(0, h - 1), (1 - fy) * a * ((y0 >= 0) & (y0 <= h - 1))),
              ((y0 + 1).clamp(0, h - 1), fy * a * ((y0 >= -1) & (y0 <= h - 2))))
        for yi, wy in ys:
            row = (yi * w + start).long()
            for xi, wx in xs:
                rows.append((row + xi.long()) * heads + head_row)
                weights.append(wy * wx)
        start += h * w
    bags = b * q * heads
    rows_t = torch.stack(rows, -1).view(bags, -1)  # [B*Q*H, L*4*P]: one bag per (query, head)
    weights_t = torch.stack(weights, -1).view(bags, -1).to(value.dtype)
    out = F.embedding_bag(rows_t, value.reshape(b * s * heads, c), per_sample_weights=weights_t, mode="sum")
    return out.view(b, q, heads * c)
