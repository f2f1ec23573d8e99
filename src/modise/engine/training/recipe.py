"""The training recipe of a run made explicit: effective batch, lr, steps, epochs.

The M-ODISE paper does not state its recipe. modise's default is batch 2 per device x 10,000
steps at AdamW lr 1e-4 (ODISE's lr, a run that fits one GPU and the CDD-CESM size). ODISE
itself trains at batch 64 x 92,188 steps (``configs/common/data/coco_panoptic_semseg.py:59``,
``configs/Panoptic/odise_label_coco_50e.py:27,45``) and offers detectron2's rule for another
batch (``odise/config/utils.py:20-80``, off unless ``reference_world_size`` is set): lr scaled
linearly with the total batch, steps (and checkpoint period) inversely. ``--reference-batch B``
applies that rule with B the total batch that ``--lr`` / ``--max-steps`` are meant for; the
warm-up and the lr drops are fractions of the run in ODISE (``odise_label_coco_50e.py:31-43``),
so an explicit ``--warmup-steps`` scales with the steps too.
"""

from __future__ import annotations

from typing import Any

# ``cfg`` below is a ``train.TrainConfig`` (not imported: train imports this module)
Settings = Any


def trainer_world_size(cfg: Settings) -> int:
    """Processes Lightning will train on (devices x nodes) for the run's hardware options."""
    import lightning as L

    probe = L.Trainer(accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes, strategy=cfg.strategy,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return int(probe.world_size)


def effective_batch(cfg: Settings, world_size: int) -> int:
    """Images per optimiser step: batch per device x gradient accumulation x devices x nodes."""
    return cfg.batch_size * cfg.grad_accum * world_size


def scale_to_batch(cfg: Settings, world_size: int) -> Settings:
    """``cfg`` with detectron2's auto_scale_workers rule applied when ``reference_batch`` is set
    (``odise/config/utils.py:59-77``: lr x s, steps / s, rounded; s = effective / reference batch)."""
    if cfg.reference_batch is None:
        return cfg
    s = effective_batch(cfg, world_size) / cfg.reference_batch
    if s == 1:
        return cfg
    update: dict[str, Any] = {
        "lr": cfg.lr * s,
        "max_steps": max(1, int(round(cfg.max_steps / s))),
        "checkpoint_every": max(1, int(round(cfg.checkpoint_every / s))),
    }
    if cfg.warmup_steps is not None:
        update["warmup_steps"] = int(round(cfg.warmup_steps / s))
    return cfg.model_copy(update=update)


def recipe_record(given: Settings, used: Settings, world_size: int, n_train_images: int) -> dict[str, Any]:
    """What ``config.yaml`` records under ``training.recipe`` (``used`` is ``given`` after scaling)."""
    batch = effective_batch(used, world_size)
    record: dict[str, Any] = {
        "effective_batch": batch,
        "batch_per_device": used.batch_size,
        "grad_accum": used.grad_accum,
        "world_size": world_size,
        "lr": used.lr,
        "max_steps": used.max_steps,
        "train_images": n_train_images,
        "epochs": round(batch * used.max_steps / max(1, n_train_images), 2),
        "reference_batch": used.reference_batch,
    }
    if used is not given:
        record["scaled_from"] = {"lr": given.lr, "max_steps": given.max_steps, "factor": batch / used.reference_batch}
    return record


def recipe_line(record: dict[str, Any]) -> str:
    """One line for the start of a run."""
    line = (f"recipe: effective batch {record['effective_batch']} ({record['batch_per_device']} per device x "
            f"{record['grad_accum']} accumulation x {record['world_size']} device(s)), lr {record['lr']:g}, "
            f"{record['max_steps']} steps = {record['epochs']:g} epochs of {record['train_images']} training images")
    if "scaled_from" in record:
        src = record["scaled_from"]
        line += (f"; scaled x{src['factor']:g} from reference batch {record['reference_batch']} "
                 f"(lr {src['lr']:g}, {src['max_steps']} steps)")
    return line
