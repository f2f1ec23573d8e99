"""M-ODISE: frozen diffusion features + implicit captioner + Mask2Former + text class head.

Public API: :func:`build_model`, :func:`load_preset`, :class:`MODISE` (see ``modise_model``).
"""

from modise.model.build import DEFAULT_CATEGORIES, build_from_config, build_model
from modise.model.config import PRESETS, ModelConfig, load_preset
from modise.model.modise_model import MODISE

__all__ = ["MODISE", "ModelConfig", "PRESETS", "DEFAULT_CATEGORIES", "build_model", "build_from_config", "load_preset"]
