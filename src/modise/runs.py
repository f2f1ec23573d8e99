"""A run folder: its layout and lifecycle, shared by ``modise train`` / ``cv`` / ``reproduce``,
``mame train``, prediction, the pipeline and the app.

Layout::

    RUN/config.yaml             what the run computes (preset, data, fold, training settings); ``model: model``
                                points at the model folder, whose own config.yaml is the one model config
    RUN/run.json                {"status": running | interrupted | failed | complete, "global_step", "max_steps", ...}
    RUN/checkpoints/last.ckpt   the resumable state (optimiser + loops)
    RUN/model/                  the trained model (``save_pretrained``), written when training finishes
    RUN/metrics.json            held-out metrics
    RUN/logs/                   TensorBoard + metrics.csv, one folder across resumes

Only rank 0 writes to a run folder; :func:`is_global_zero` says which process that is before a
launcher has started.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from modise.errors import ModiseError

CKPT_DIR, LAST_CKPT, MODEL_DIR = "checkpoints", "last.ckpt", "model"
CONFIG_YAML, METRICS_JSON, RUN_JSON, LOGS_DIR = "config.yaml", "metrics.json", "run.json", "logs"
COMPLETE = "complete"


def is_global_zero() -> bool:
    """Rank 0 before Lightning starts (its DDP launcher re-runs the command with these set)."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def model_dir(path: str | Path) -> Path:
    """The model folder of a run (``RUN/model``) or ``path`` itself when it is a model folder."""
    path = Path(path)
    return path / MODEL_DIR if (path / MODEL_DIR).is_dir() else path


def load_run_config(run: str | Path) -> dict[str, Any]:
    """``RUN/config.yaml`` as a dict; a clear error when ``run`` is not a run folder."""
    import yaml

    path = Path(run) / CONFIG_YAML
    if not path.is_file():
        raise ModiseError(f"'{run}' is not a training run: {path} is missing.")
    return yaml.safe_load(path.read_text())


def write_yaml(path: Path, obj: Any) -> None:
    """``obj`` as YAML in key order, written atomically (paths, tuples and numpy values as plain YAML)."""
    import yaml

    from modise.outputs import json_default, write_bytes_atomic

    plain = json.loads(json.dumps(obj, default=json_default))
    write_bytes_atomic(path, yaml.safe_dump(plain, sort_keys=False).encode())


def read_run_status(run: str | Path) -> dict[str, Any] | None:
    """``RUN/run.json`` (``status``, ``global_step``, ``max_steps``), or ``None`` for a folder without one."""
    try:
        return json.loads((Path(run) / RUN_JSON).read_text())
    except (OSError, ValueError):
        return None


def write_run_status(run: Path, status: str, **extra: Any) -> None:
    from modise.outputs import write_json_atomic

    write_json_atomic(run / RUN_JSON, {"status": status, **extra, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def require_complete_run(path: str | Path) -> None:
    """Raise unless ``path`` (a run or its ``model/``) finished training; plain model folders pass."""
    path = Path(path)
    run = path.parent if path.name == MODEL_DIR and (path.parent / CONFIG_YAML).is_file() else path
    st = read_run_status(run)
    if st is None or st.get("status") == COMPLETE:
        return
    status = st.get("status")
    where = f"{status} at step {st.get('global_step', '?')} of {st.get('max_steps', '?')}"
    if status == "running":
        where = f"still training, or killed, at step {st.get('global_step', '?')} of {st.get('max_steps', '?')}"
    raise ModiseError(
        f"'{run}' is an unfinished training run ({where}); finish it with the same `modise train` command "
        f"plus --resume (--out {run}) before using it."
    )


def prepare_run_dir(out: Path, resume: bool, overwrite: bool, inputs: list | tuple = ()) -> Path | None:
    """Check/clear ``out``; return the checkpoint to resume from (``None`` for a fresh run).

    ``--resume`` needs ``RUN/checkpoints/last.ckpt`` (a missing one is an error, never a silent
    fresh start); a fresh run needs an empty ``out``, a run that failed before its first checkpoint,
    or ``overwrite`` of a folder modise wrote.
    """
    from modise.outputs import check_output_dir, claim_output_dir, remove_output_dir

    last = out / CKPT_DIR / LAST_CKPT
    if resume:
        if last.is_file():
            return last
        if not out.exists():
            raise ModiseError(f"Cannot resume: '{out}' does not exist; start the run without --resume.")
        again = "with --overwrite instead of --resume" if any(out.iterdir()) else "without --resume"
        raise ModiseError(f"Cannot resume: '{last}' does not exist (nothing was saved); start the run again {again}.")
    if not is_global_zero():
        return None
    if not overwrite and not last.is_file() and (read_run_status(out) or {}).get("status") == "failed":
        overwrite = True  # a run that failed before saving a checkpoint holds nothing to keep
    check_output_dir(out, overwrite, inputs, hint="pass --resume to continue the run in it, or --overwrite to start it again")
    if overwrite:
        remove_output_dir(out, inputs)
    claim_output_dir(out, inputs)
    return None
