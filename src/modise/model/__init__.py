"""M-ODISE: frozen diffusion features + implicit captioner + Mask2Former + text class head.

Public API: :func:`build_model`, :func:`load_preset`, :class:`MODISE` (see ``modise_model``);
a new feature extractor is a :class:`modise.model.backbone.Backbone` built in ``build_parts.build_backbone``.
Names resolve lazily so that importing ``modise.model.cli`` (for ``modise --help``) does not
pull in torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Backbone": "modise.model.backbone",
    "DEFAULT_CATEGORIES": "modise.model.build_parts",
    "build_from_config": "modise.model.build",
    "build_model": "modise.model.build",
    "PRESETS": "modise.model.config",
    "ModelConfig": "modise.model.config",
    "load_preset": "modise.model.config",
    "preset_names": "modise.model.presets",
    "MODISE": "modise.model.modise_model",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'modise.model' has no attribute {name!r}")
