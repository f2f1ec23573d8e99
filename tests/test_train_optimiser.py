"""Optimiser groups (ODISE vs Mask2Former rules) and ODISE's warm-up."""

from __future__ import annotations

import pytest
import torch

from modise.engine.training.lightning_module import ModiseLightning
from modise.engine.training.schedule import ODISE_MILESTONES, param_groups, warmup_step_decay
from modise.model import build_model


def _group_of(groups):
    return {id(p): (g.get("initial_lr", g["lr"]), g["weight_decay"]) for g in groups for p in g["params"]}


def test_odise_rules_no_decay_on_norms_and_biases_embeddings_decayed():
    m = build_model("m-odise", "tiny")
    opt = ModiseLightning(m, lr=1e-4, weight_decay=0.05).configure_optimizers()["optimizer"]
    of = _group_of(opt.param_groups)
    named = dict(m.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert {id(named[n]) for n in trainable} == set(of)  # every trainable parameter exactly once, nothing frozen
    for name, mod in m.named_modules():
        for pn, p in mod.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            lr, wd = of[id(p)]
            assert lr == 1e-4
            if isinstance(mod, (torch.nn.LayerNorm, torch.nn.GroupNorm)) or pn == "bias":
                assert wd == 0.0, f"{name}.{pn}"
            elif isinstance(mod, torch.nn.Embedding) or pn in ("weight", "gate", "null_embed"):
                assert wd == 0.05, f"{name}.{pn}"  # ODISE sets no embedding rule (configs/common/optim.py)


def test_mask2former_rules_for_m2f_swinl():
    m = build_model("m2f-swinl", "tiny")
    c = m.config.optimizer
    of = _group_of(param_groups(m, 1e-4, 0.05, c.weight_decay_norm, c.weight_decay_bias, c.weight_decay_embed,
                                c.backbone_lr_multiplier))
    named = dict(m.named_parameters())
    table = next(n for n in named if n.endswith("relative_position_bias_table"))
    assert of[id(named[table])] == (pytest.approx(1e-5), 0.0)  # backbone lr x 0.1, Swin table undecayed
    qkv_bias = next(n for n in named if n.startswith("backbone.") and n.endswith("q_proj.bias"))
    assert of[id(named[qkv_bias])] == (pytest.approx(1e-5), 0.05)  # Mask2Former decays biases
    assert of[id(named["mask_generator.transformer.queries_embedder.weight"])] == (1e-4, 0.0)  # nn.Embedding
    assert of[id(named["class_head.linear.bias"])] == (1e-4, 0.05)
    norm = next(n for n, mod in m.named_modules() if isinstance(mod, torch.nn.LayerNorm) and n.startswith("mask_generator"))
    assert of[id(named[norm + ".weight"])] == (1e-4, 0.0)


def test_warmup_is_odises_fraction_of_the_run():
    m = build_model("m2f-sd", "tiny")
    module = ModiseLightning(m, max_steps=184375)
    assert module.resolved_warmup_steps() == pytest.approx(500)  # 500/184375 of the run
    sched = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert sched.get_last_lr()[0] == pytest.approx(1e-4 * 0.067)  # warmup_factor 0.067
    assert warmup_step_decay(250, 184375, 500) == pytest.approx(0.067 * 0.5 + 0.5)
    assert warmup_step_decay(163888, 184375, 500, ODISE_MILESTONES) == 1.0
    assert warmup_step_decay(163889, 184375, 500, ODISE_MILESTONES) == pytest.approx(0.1)  # milestone 163889/184375
    assert ModiseLightning(m, max_steps=1000, warmup_steps=20).resolved_warmup_steps() == 20  # explicit steps win
    swin = build_model("m2f-swinl", "tiny")
    assert ModiseLightning(swin, max_steps=1000).resolved_warmup_steps() == 0  # Mask2Former: WARMUP_FACTOR 1.0
