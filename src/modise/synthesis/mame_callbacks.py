"""What ``modise mame train`` watches during fit: a validation image strip and the fixed-noise loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from modise.synthesis.mame_module import MameModule, fixed_loss

VALIDATION_PROMPTS = (  # one training caption per vendor (prompts.training_caption)
    "a siemens mammogram in CC view with low density",
    "a hologic mammogram in MLO view with big area",
)


class ValidationStrip(L.Callback):
    """Every ``every`` steps, images from fixed prompts and seeds -> ``validation/step_XXXXXX.png``."""

    def __init__(self, out: Path, every: int, prompts: tuple[str, ...], resolution: int, steps: int = 20,
                 mask: np.ndarray | None = None, image: np.ndarray | None = None) -> None:
        self.out, self.every, self.prompts, self.resolution, self.steps = out, every, prompts, resolution, steps
        self.mask, self.image = mask, image
        self.done = -1

    def on_train_batch_end(self, trainer: L.Trainer, module: MameModule, *args: Any) -> None:
        step = trainer.global_step
        # With gradient accumulation several batches end at the same global_step: draw once.
        if self.every <= 0 or step == 0 or step % self.every or step == self.done or not trainer.is_global_zero:
            return
        self.done = step
        from modise.synthesis.generate import generate_images, image_grid
        from modise.synthesis.inpaint import inpaint_lesion

        pipe = module.pipeline()
        was_training = module.training
        module.eval()
        with torch.no_grad():
            if module.inpainting:
                row = [inpaint_lesion(pipe, self.image, self.mask, seed=s, steps=self.steps, crop=self.resolution)[0]
                       for s in range(len(self.prompts))]
            else:
                # guidance 4 as MAM-E's validation (config_file.yaml@dc9fead:22)
                row = [generate_images(pipe, p, 1, s, self.steps, 4.0, "L", self.resolution)[0]
                       for s, p in enumerate(self.prompts)]
        module.train(was_training)
        self.out.mkdir(parents=True, exist_ok=True)
        strip = image_grid([row])
        strip.save(self.out / f"step_{step:06d}.png")
        exp = getattr(trainer.logger, "experiment", None)
        if exp is not None and hasattr(exp, "add_image"):
            exp.add_image("validation", np.asarray(strip)[None], step)


class FixedLoss(L.Callback):
    """The fixed-noise loss at the start and the end of ``fit``, on the training device (rank 0 only).

    Lightning has moved the module to its device (and restored a resumed checkpoint) by
    ``on_train_start``; at ``on_train_end`` the module is still there (teardown moves it to the CPU).
    """

    def __init__(self, dataset: Dataset, seed: int, say: Any = None) -> None:
        self.dataset, self.seed, self.say = dataset, seed, say
        self.before: float | None = None
        self.after: float | None = None

    def _measure(self, trainer: L.Trainer, module: MameModule, when: str) -> float | None:
        if not trainer.is_global_zero:
            return None
        if self.say:
            n = min(len(self.dataset), 16)
            self.say(f"fixed-noise loss {when} training on {n} image(s), {module.device} ...")
        return fixed_loss(module, self.dataset, self.seed)

    def on_train_start(self, trainer: L.Trainer, module: MameModule) -> None:
        self.before = self._measure(trainer, module, "before")

    def on_train_end(self, trainer: L.Trainer, module: MameModule) -> None:
        self.after = self._measure(trainer, module, "after")
