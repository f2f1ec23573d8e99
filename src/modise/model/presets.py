"""The presets folder (``modise/presets/*.yaml``): every YAML file in it is one preset.

A seventh preset is one more file: the preset list (:func:`preset_names`), the ``--preset`` help,
``reproduce``'s default and the results table's row order all read the folder. A preset's
``order:`` places it (the paper's Table 1 rows are 1-6); presets without one follow by name.
:func:`modise.model.config.load_preset` validates a preset's contents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modise.errors import ModiseError

PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ModiseError(f"{path}: invalid YAML ({e}).") from None
    if not isinstance(data, dict):
        raise ModiseError(f"{path}: expected a mapping at the top level.")
    return data


def preset_names() -> tuple[str, ...]:
    """Every preset in ``presets/``: by its ``order:`` (the paper's Table 1 rows), then those without one by name.

    ``modise.model.config.PRESETS`` is the same tuple.
    """
    ranked = []
    for path in PRESETS_DIR.glob("*.yaml"):
        order = read_yaml(path).get("order", float("inf"))
        if isinstance(order, bool) or not isinstance(order, (int, float)):
            raise ModiseError(f"{path}: order must be a number (its place in the preset list), not {order!r}.")
        ranked.append((order, path.stem))
    return tuple(name for _, name in sorted(ranked))


def preset_path(name: str) -> Path:
    """The YAML file of a named preset, or ``name`` itself if it is a YAML file path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ModiseError(f"Unknown preset '{name}'; choose one of {', '.join(preset_names())} or pass a preset YAML file.")
    return path
