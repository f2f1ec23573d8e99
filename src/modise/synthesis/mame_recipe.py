"""Training recipes of ``modise mame train``: MAM-E's own settings, or a light one for small runs.

``mame`` is the ``fusion_healthy`` run as configured in MAM-E's
``experiments/with_prompt/fusion/config_file.yaml`` at commit dc9fead (SD 1.5 base):
batch 16 per device (l.40) x gradient accumulation 16 (l.41) = 256 images per optimizer
step, 6000 optimizer steps (l.43), AdamW lr 1e-6 constant without warm-up (l.44-47),
weight decay 1e-2 (l.55), gradient-norm clip 1.0 (l.57), text encoder trained (l.39).
MAM-E used bitsandbytes' 8-bit AdamW (l.60); modise uses torch's AdamW.

``inpaint`` is the run behind the released ``Likalto4/vindr_lesion-inpainting``: its config
``experiments/inpainting/vindr-mammo/config_file.yaml@10a9966`` writes to ``vindr_lesion-inpainting``
(l.11) from every VinDr finding but "No Finding" (l.9 ``siemens15k_RGB_wlesions``), SD inpainting
base (l.2), batch 8 (l.41) x accumulation 1 (l.42), 15000 steps (l.44; 10000 at 19e841d), lr 1e-6
constant (l.45-48), weight decay 1e-2 (l.56), clip 1.0 (l.58), text encoder trained (l.40).
``inpaint-mass`` is MAM-E's later Mass-only run (the same file @5d1e833: ``siemens15k_RGB_wMass``
-> ``inpainting_vindr_massbs32``): batch 16 (l.41) x accumulation 2 (l.42), 6000 steps (l.44).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from modise.errors import ModiseError


@dataclass(frozen=True)
class MameRecipe:
    """Optimisation settings of one fine-tune; ``lr`` None = 1e-6 full / 1e-4 LoRA."""

    name: Literal["mame", "light", "inpaint", "inpaint-mass"]
    batch_size: int
    grad_accum: int
    max_steps: int
    lr: float | None
    weight_decay: float
    grad_clip: float
    train_text_encoder: bool = True


RECIPES = {
    "mame": MameRecipe("mame", batch_size=16, grad_accum=16, max_steps=6000, lr=1e-6, weight_decay=1e-2, grad_clip=1.0),
    "inpaint": MameRecipe("inpaint", batch_size=8, grad_accum=1, max_steps=15000, lr=1e-6, weight_decay=1e-2, grad_clip=1.0),
    "inpaint-mass": MameRecipe("inpaint-mass", batch_size=16, grad_accum=2, max_steps=6000, lr=1e-6, weight_decay=1e-2,
                               grad_clip=1.0),
    # Small data or one small GPU: one image per step, a short run.
    "light": MameRecipe("light", batch_size=1, grad_accum=1, max_steps=1000, lr=None, weight_decay=1e-2, grad_clip=1.0),
}


def default_recipe(size: str, inpainting: bool = False) -> str:
    """For the full size what MAM-E trained (``inpaint``: the released lesion-inpainting model's
    run; ``mame``: the text-to-image run), ``light`` for the tiny test size."""
    if size != "full":
        return "light"
    return "inpaint" if inpainting else "mame"


def resolve_recipe(name: str, lora: bool = False, **overrides: Any) -> MameRecipe:
    """The named recipe with every non-None override applied (command-line options win).

    With LoRA the recipe's full fine-tune lr (1e-6) gives way to LoRA's 1e-4 unless ``lr`` is given.
    """
    if name not in RECIPES:
        raise ModiseError(f"--recipe must be one of {', '.join(RECIPES)}, not '{name}'.")
    recipe = RECIPES[name]
    if lora:
        recipe = replace(recipe, lr=None)
    recipe = replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
    if recipe.lr is None:
        recipe = replace(recipe, lr=1e-4 if lora else 1e-6)
    return recipe
