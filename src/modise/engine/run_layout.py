"""The layout of a training run folder, read by prediction, the app and the demo:
``RUN/config.yaml`` (model, categories, training settings), ``RUN/model/`` (the trained model),
``RUN/checkpoints/last.ckpt``, ``RUN/metrics.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modise.errors import ModiseError

CKPT_DIR, LAST_CKPT, MODEL_DIR = "checkpoints", "last.ckpt", "model"
CONFIG_YAML, METRICS_JSON = "config.yaml", "metrics.json"


def load_run_config(run: str | Path) -> dict[str, Any]:
    """``RUN/config.yaml`` as a dict; a clear error when ``run`` is not a training run."""
    import yaml

    path = Path(run) / CONFIG_YAML
    if not path.is_file():
        raise ModiseError(f"'{run}' is not a training run: {path} is missing.")
    return yaml.safe_load(path.read_text())
