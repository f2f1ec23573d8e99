"""MAM-E synthesis: text-to-image mammograms, lesion inpainting, and lesions as training data.

Public API (torch and diffusers load lazily, on first call)::

    from modise.synthesis import build_prompt, load_text2img, generate_images
    pipe = load_text2img("Likalto4/fusion_healthy")          # or a folder, or random_weights=True
    images = generate_images(pipe, build_prompt("siemens", "MLO", "high", "small"), n=4, seed=0)
"""

from modise.synthesis.generate import generate_images, guidance_sweep
from modise.synthesis.inpaint import auto_box, inpaint_lesion
from modise.synthesis.pipelines import load_inpaint, load_text2img
from modise.synthesis.prompts import INPAINT_PROMPT, build_prompt

__all__ = [
    "INPAINT_PROMPT",
    "auto_box",
    "build_prompt",
    "generate_images",
    "guidance_sweep",
    "inpaint_lesion",
    "load_inpaint",
    "load_text2img",
]
