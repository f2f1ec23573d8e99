"""What the web app holds between requests: settings, the runs it can choose from, loaded
models (built once, on first use) and the temporary folder for uploads and results.

The models come from the same API as the CLI: :meth:`ModisePipeline.from_pretrained` for trained runs
(``modise predict``), :func:`build_model` for the offline random-weight segmenter, and
:func:`load_text2img` / :func:`load_inpaint` for MAM-E (``modise generate`` / ``inpaint``).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modise.errors import ModiseError

RANDOM_RUN = "random weights (offline)"


def _config_thresholds() -> tuple[float, float]:
    from modise.model.config import InferenceConfig

    ic = InferenceConfig()
    return ic.object_mask_threshold, ic.overlap_threshold


# The model config's defaults (modise.model.config.InferenceConfig); a run's config.yaml overrides them.
DEFAULT_THRESHOLDS = _config_thresholds()
# A random-weight model scores about 1/(K+1); lower defaults so its output is visible at all.
RANDOM_THRESHOLDS = (0.4, 0.5)


@dataclass
class AppSettings:
    """How ``modise serve`` was started (see ``modise serve --help``)."""

    runs: list[Path] = field(default_factory=list)
    runs_dir: Path | None = None
    random_weights: bool = False
    size: str = "full"
    preset: str = "m-odise"
    random_image_size: int = 128  # shortest edge the offline random-weight model predicts at (fast on a CPU)
    text2img_model: str | None = None
    inpaint_model: str | None = None
    device: str | None = None
    max_upload_mb: float = 200.0  # MB of 2**20 bytes, the unit Gradio's upload box shows ("200.0 Mb")
    max_pixels: int = 80_000_000  # > any mammogram (e.g. 4096 x 5625 = 23 MP)
    seed: int = 0
    keep_files_s: int = 3600  # uploads and results older than this are deleted while the server runs
    dicomweb_url: str | None = None  # the PACS the Segment tab opens studies from (credentials: environment)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)


MB = 2**20


def is_run(path: Path) -> bool:
    """A finished training run (``RUN/model`` holds a saved model) or a saved model folder itself."""
    from modise.runs import COMPLETE, read_run_status
    from modise.model.modise_model import WEIGHTS_FILE

    status = read_run_status(path)
    if status is not None and status.get("status") != COMPLETE:
        return False  # interrupted or still training: offer it once it is finished
    return (path / "model" / WEIGHTS_FILE).is_file() or (path / WEIGHTS_FILE).is_file()


def find_runs(root: Path, max_depth: int = 3) -> list[Path]:
    """Training runs under ``root`` (itself included), at most ``max_depth`` folders deep."""
    root = Path(root)
    if not root.is_dir():
        raise ModiseError(f"Runs folder '{root}' does not exist.")
    found, frontier = [], [root]
    for _ in range(max_depth + 1):
        nxt = []
        for d in frontier:
            if is_run(d):
                found.append(d)
                continue  # a run's own subfolders (checkpoints, logs) are not runs
            nxt += sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        frontier = nxt
    return found


class AppState:
    """Shared by all sessions of one server; model caches are guarded by one lock (CPU work is serial anyway)."""

    def __init__(self, settings: AppSettings, tmp_root: str | Path | None = None) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self._segmenters: dict[str, Any] = {}
        self._mame_pipes: dict[str, Any] = {}
        self.run_paths: dict[str, Path] = {}
        from modise.runs import require_complete_run

        for run in settings.runs:
            run = Path(run)
            if not run.exists():
                raise ModiseError(f"Run '{run}' does not exist.")
            require_complete_run(run)
            self.run_paths[str(run)] = run
        if settings.runs_dir is not None:
            for run in find_runs(settings.runs_dir):
                self.run_paths.setdefault(str(run), run)
        # made last, so that a bad --run leaves nothing behind
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="modise-serve-", dir=tmp_root))

    # ------------------------------------------------------------------ folders
    @property
    def upload_dir(self) -> Path:
        """Where Gradio keeps uploads and the files it serves (``GRADIO_TEMP_DIR``)."""
        return self.tmp_dir / "gradio"

    def job_dir(self, kind: str) -> Path:
        """A fresh folder for one request's downloadable results; those older than ``keep_files_s`` go."""
        jobs = self.tmp_dir / "jobs"
        if jobs.is_dir():
            old = time.time() - self.settings.keep_files_s
            for d in jobs.iterdir():
                if d.stat().st_mtime < old:
                    shutil.rmtree(d, ignore_errors=True)
        d = jobs / f"{kind}-{uuid.uuid4().hex[:10]}"
        d.mkdir(parents=True)
        return d

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    # ------------------------------------------------------------------ segmentation
    @property
    def run_choices(self) -> list[str]:
        """Runs given with --run first (the first is the default), then --runs-dir, the random model last."""
        return list(self.run_paths) + ([RANDOM_RUN] if self.settings.random_weights else [])

    def model_description(self, run: str | None) -> str:
        """What a result was computed with: the run (preset, size, steps) or the random offline model."""
        if run == RANDOM_RUN:
            s = self.settings
            return (f"{RANDOM_RUN}: {s.preset} ({s.size}) with random weights, NOT a trained model: "
                    f"its lesions are meaningless")
        path = self.run_paths.get(run or "")
        if path is None:
            return str(run)
        try:
            from modise.runs import load_run_config, read_run_status

            cfg = load_run_config(path)
            steps = (read_run_status(path) or {}).get("global_step")
            fold = cfg.get("fold")
            return (f"{run}: {cfg.get('preset', '?')} ({cfg.get('size', '?')}"
                    + (", random frozen parts" if cfg.get("random_weights") else "")
                    + (f", {steps} steps" if steps is not None else "")
                    + (f", fold {fold} held out" if fold is not None else "") + ")")
        except (ModiseError, OSError, ValueError, TypeError, AttributeError):
            return str(run)

    def default_thresholds(self, run: str | None) -> tuple[float, float]:
        """The run's own inference thresholds (``config.yaml``), read without loading the model."""
        if run == RANDOM_RUN:
            return RANDOM_THRESHOLDS
        path = self.run_paths.get(run or "")
        if path is None:
            return DEFAULT_THRESHOLDS
        import yaml

        from modise.runs import CONFIG_YAML, model_dir

        try:

            # the model config saved with the weights owns them (RUN/model/config.yaml)
            inf = (yaml.safe_load((model_dir(path) / CONFIG_YAML).read_text()) or {}).get("inference") or {}
            return (float(inf.get("object_mask_threshold", DEFAULT_THRESHOLDS[0])),
                    float(inf.get("overlap_threshold", DEFAULT_THRESHOLDS[1])))
        except (ModiseError, OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
            return DEFAULT_THRESHOLDS

    def segmentation_pipeline(self, run: str | None):
        """The :class:`~modise.pipeline.ModisePipeline` for a run choice (built once)."""
        if not run:
            raise ModiseError("No segmentation model: start the app with --run RUN, --runs-dir DIR or --random-weights.")
        with self.lock:
            if run not in self._segmenters:
                self._segmenters[run] = self._load_segmentation_pipeline(run)
            return self._segmenters[run]

    def warm_up(self) -> threading.Thread | None:
        """Load the first run's model in the background, so the first click does not wait for it."""
        if not self.run_choices:
            return None

        def load() -> None:
            try:
                self.segmentation_pipeline(self.run_choices[0])
            except Exception as e:  # noqa: BLE001  the Segment tab reports it again, in the page
                import sys

                print(f"warning: could not load '{self.run_choices[0]}': {e}", file=sys.stderr)

        t = threading.Thread(target=load, name="modise-warm-up", daemon=True)
        t.start()
        return t

    def _load_segmentation_pipeline(self, run: str):
        from modise.pipeline import ModisePipeline

        if run == RANDOM_RUN and self.settings.random_weights:
            from modise.data.phantoms import CATEGORIES
            from modise.model import build_model

            import torch

            s = self.settings
            torch.manual_seed(s.seed)  # the trainable heads too: the same offline model in every server
            model = build_model(s.preset, s.size, random_weights=True, categories=list(CATEGORIES))
            pipe = ModisePipeline(model, device=s.device or "cpu")
            pipe.set_inference(image_size=s.random_image_size, object_mask_threshold=RANDOM_THRESHOLDS[0],
                               overlap_threshold=RANDOM_THRESHOLDS[1])
            return pipe
        if run not in self.run_paths:
            raise ModiseError(f"Unknown run '{run}'; choose one of: {', '.join(self.run_choices) or 'none'}.")
        return ModisePipeline.from_pretrained(self.run_paths[run], device=self.settings.device)

    # ------------------------------------------------------------------ MAM-E
    def mame_description(self, kind: str) -> str:
        """Which MAM-E ``"text2img"`` / ``"inpaint"`` model the tab uses (random weights said plainly)."""
        from modise.synthesis.pipelines import MAME_INPAINT, MAME_TEXT2IMG

        s = self.settings
        if s.random_weights:
            return f"MAM-E {kind} with random weights ({s.size}), NOT a trained model: its lesions are noise"
        model = s.inpaint_model if kind == "inpaint" else s.text2img_model
        return f"MAM-E {kind}: {model or (MAME_INPAINT if kind == 'inpaint' else MAME_TEXT2IMG)}"

    def mame_pipeline(self, kind: str):
        """MAM-E ``"text2img"`` or ``"inpaint"`` pipeline, loaded once (random weights offline)."""
        from modise.synthesis import load_inpaint, load_text2img

        with self.lock:
            if kind not in self._mame_pipes:
                s = self.settings
                load = load_inpaint if kind == "inpaint" else load_text2img
                model = s.inpaint_model if kind == "inpaint" else s.text2img_model
                self._mame_pipes[kind] = load(model, size=s.size, random_weights=s.random_weights, seed=s.seed, device=s.device)
            return self._mame_pipes[kind]
