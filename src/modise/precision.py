"""The Lightning precision of a run, one rule for ``modise train``, ``modise mame train`` and ``modise model bench``."""

from __future__ import annotations

PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")


def resolve_precision(precision: str = "auto", accelerator: str = "auto") -> str:
    """``precision`` itself, or for ``"auto"``: ``bf16-mixed`` on a GPU that supports bf16, else ``32-true``."""
    if precision != "auto":
        return precision
    import torch

    use_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if use_gpu and torch.cuda.is_bf16_supported() else "32-true"
