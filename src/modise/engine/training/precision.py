"""Re-export for ``train.py`` until its import points at :mod:`modise.precision` (the owner)."""

from modise.precision import PRECISIONS, resolve_precision

__all__ = ["PRECISIONS", "resolve_precision"]
