"""Each dependency floor in pyproject is a version that provides what modise calls.

The floors below were read from the released wheels (pip download --no-deps, then grep): an older
version installs cleanly and then silently does something else (diffusers before 0.40 drops the
``dtype=`` of ``from_pretrained``, so pipelines load in fp32 on a GPU).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]

NEEDED = {  # name: (lowest version that works, what modise calls)
    "diffusers": ("0.40", "DiffusionPipeline.from_pretrained(dtype=...) in synthesis/pipelines.py"),
    "open-clip-torch": ("3.0", "the local-dir: schema for a local CLIP/BiomedCLIP folder (model/image_encoders.py)"),
    "gradio": ("6.0", "Blocks.launch(theme=..., footer_links=...) in app/server.py"),
    "gradio-client": ("2.0", "the client of gradio 6"),
    "peft": ("0.20", "transformers 5's MIN_PEFT_VERSION (LoRA in synthesis/mame_module.py)"),
    "accelerate": ("1.1", "transformers 5's ACCELERATE_MIN_VERSION"),
    "safetensors": ("0.8", "what diffusers 0.40 requires"),
}


def _floors() -> dict[str, Version]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project.get("optional-dependencies", {}).values() for r in extra]
    out = {}
    for r in reqs:
        lows = [Version(s.version) for s in r.specifier if s.operator in (">=", "==", "~=")]
        if lows:
            out[canonicalize_name(r.name)] = max(lows)
    return out


def test_floors_provide_what_modise_calls() -> None:
    floors = _floors()
    low = [f"{name}>={floors.get(name)} (needs {v}: {why})" for name, (v, why) in NEEDED.items()
           if floors.get(name) is None or floors[name] < Version(v)]
    assert not low, "; ".join(low)


def test_pipeline_from_pretrained_honours_dtype(tmp_path) -> None:
    """What the diffusers floor guards: a saved pipeline loaded with dtype=bf16 comes back in bf16."""
    import torch
    from diffusers import StableDiffusionPipeline

    from modise.synthesis.pipelines import _from_pretrained, build_random_pipeline

    pipe = build_random_pipeline("tiny", seed=0)
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = _from_pretrained(StableDiffusionPipeline, str(tmp_path / "pipe"), torch.bfloat16)
    assert loaded.unet.dtype == loaded.vae.dtype == loaded.text_encoder.dtype == torch.bfloat16
