"""Mixed precision as Mask2Former: under bf16 autocast the deformable pixel decoder
(msdeformattn.py:314-320) and the Hungarian matcher's costs (matcher.py:134-141) stay fp32.
CPU autocast stands in for the GPU's: it lowers the same linear/conv/matmul ops to bf16."""

import pytest
import torch

from modise.model.config import LossConfig
from modise.model.criterion import SetCriterion
from modise.model.mask_generator import MaskGenerator

CHANNELS = [16, 32, 64, 128]


@pytest.fixture(scope="module")
def generator_and_features():
    torch.manual_seed(0)
    gen = MaskGenerator(CHANNELS, hidden_dim=32, num_queries=10, dec_layers=2, enc_layers=2, nheads=4,
                        dim_feedforward=64, enc_feedforward=64).eval()
    feats = [torch.randn(2, c, 64 // s, 64 // s) for c, s in zip(CHANNELS, (1, 2, 4, 8))]
    return gen, feats


def test_pixel_decoder_is_fp32_under_bf16_autocast(generator_and_features):
    gen, feats = generator_and_features
    with torch.no_grad():
        _, _, fp32_features = gen(feats)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            masks, _, features = gen(feats)
            plain = gen.pixel_decoder(feats, return_dict=True).mask_features  # what autocast alone would give
    assert features.dtype == torch.float32
    torch.testing.assert_close(features, fp32_features, rtol=1e-6, atol=1e-6)
    # the transformer decoder still autocasts (Mask2Former's predictor is not excluded)
    assert masks[-1].dtype == torch.bfloat16
    # the bf16 pixel decoder is measurably off: what keeping it fp32 avoids
    assert plain.dtype == torch.bfloat16
    assert ((plain.float() - fp32_features).abs().max() / fp32_features.abs().max()) > 1e-3


def _matching_inputs(seed: int, b=2, q=50, n=8, h=32):
    g = torch.Generator().manual_seed(seed)
    masks = (torch.randn(b, q, h, h, generator=g) * 3).to(torch.bfloat16)  # as the decoder emits them under autocast
    logits = torch.randn(b, q, 4, generator=g).to(torch.bfloat16)
    tgt_masks = [(torch.rand(n, h, h, generator=g) > 0.5).float() for _ in range(b)]
    tgt_labels = [torch.randint(0, 3, (n,), generator=g) for _ in range(b)]
    return masks, logits, tgt_masks, tgt_labels


def _same(a, b) -> bool:
    return all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_matcher_costs_are_fp32_under_bf16_autocast():
    """Under autocast the criterion's matcher assigns exactly as an fp32 matcher on the same (bf16)
    predictions; the same matcher computing its costs in bf16 assigns differently on most seeds."""
    matcher = SetCriterion(3, LossConfig()).loss.matcher
    inner = matcher.matcher  # transformers' Mask2FormerHungarianMatcher
    bf16_differs = 0
    for seed in range(5):
        masks, logits, tgt_masks, tgt_labels = _matching_inputs(seed)
        torch.manual_seed(1)  # the matcher draws its points with torch.rand
        reference = inner(masks.float(), logits.float(), tgt_masks, tgt_labels)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.manual_seed(1)
            got = matcher(masks, logits, tgt_masks, tgt_labels)
            torch.manual_seed(1)
            in_bf16 = inner(masks, logits, tgt_masks, tgt_labels)
        assert _same(got, reference)
        bf16_differs += not _same(in_bf16, reference)
    assert bf16_differs >= 2
