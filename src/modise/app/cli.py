"""``modise serve``: the web app (Segment / Generate / Inpaint) on Gradio."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from modise.cli_options import MODEL_METAVAR, RUN_HELP, Device, ModelSize, Preset, RandomWeights, Size, auto_device, positive_float


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``modise`` app."""

    @app.command("serve")
    def serve(
        run: Optional[list[Path]] = typer.Option(None, "--run", "--checkpoint", help=RUN_HELP[:-1] + "; repeatable."),
        runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="Offer every training run found under this folder."),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 exposes the app to your network."),
        port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, show_default="Gradio's, 7860 or the next free one", help="Port."),
        share: bool = typer.Option(False, "--share", help="Also open a public Gradio share link."),
        random_weights: RandomWeights = False,
        size: Size = ModelSize.full,
        preset: Preset = "m-odise",
        text2img_model: Optional[str] = typer.Option(None, "--text2img-model", metavar=MODEL_METAVAR, show_default="Likalto4/fusion_healthy",
                                                     help="MAM-E text-to-image pipeline: hub id or folder."),
        inpaint_model: Optional[str] = typer.Option(None, "--inpaint-model", metavar=MODEL_METAVAR,
                                                    show_default="Likalto4/vindr_lesion-inpainting",
                                                    help="MAM-E inpainting pipeline: hub id or folder."),
        device: Device = "auto",
        max_upload_mb: float = typer.Option(200.0, "--max-upload-mb", parser=positive_float, help="Reject uploads larger than this many MB."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of the random-weight models."),
        dicomweb_url: Optional[str] = typer.Option(None, "--dicomweb-url", metavar="URL",
                                                   help="DICOMweb server the Segment tab opens studies from (credentials from "
                                                        "MODISE_DICOMWEB_TOKEN or MODISE_DICOMWEB_USER/MODISE_DICOMWEB_PASSWORD)."),
    ) -> None:
        """Serve the web app: segment and review lesions, generate and inpaint mammograms."""
        import os
        import sys

        size = ModelSize(size).value
        _check_serve_options(preset, size, runs_dir, device)
        if dicomweb_url is not None:
            from modise.dicom.dicomweb import check_url

            dicomweb_url = check_url(dicomweb_url, "--dicomweb-url")
        if not (run or runs_dir or random_weights):
            print("warning: no segmentation model (--run, --runs-dir or --random-weights); the Segment tab will say so.",
                  file=sys.stderr)
        from modise.app.server import serve as serve_app
        from modise.app.state import AppSettings, AppState

        settings = AppSettings(
            runs=list(run or []), runs_dir=runs_dir, random_weights=random_weights, size=size, preset=preset,
            text2img_model=text2img_model, inpaint_model=inpaint_model, device=auto_device(device), max_upload_mb=max_upload_mb, seed=seed,
            dicomweb_url=dicomweb_url,
        )
        state = AppState(settings)

        def ready(url: str) -> None:
            print(f"modise serve: {url}  (uploads in {state.tmp_dir}, removed at exit; Ctrl-C to stop)", file=sys.stderr, flush=True)
            print(url, flush=True)

        serve_app(state, host=host, port=port, share=share, on_ready=ready)
        # The server is closed and the temp folder gone; skip the interpreter's teardown of torch /
        # Gradio worker threads, which takes seconds after a stop (Ctrl-C should feel immediate).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _check_serve_options(preset: str, size: str, runs_dir: Path | None, device: str | None) -> None:
    """Refuse, before the server starts, options that would leave the app without the model asked for."""
    from modise.app.state import find_runs
    from modise.checks import check_device, check_preset
    from modise.errors import UsageError

    check_preset(preset, size)
    check_device(device)
    if runs_dir is not None:
        if not runs_dir.is_dir():
            raise UsageError("--runs-dir", f"'{runs_dir}' is not a folder.")
        if not find_runs(runs_dir):
            raise UsageError("--runs-dir", f"'{runs_dir}' holds no finished training run (a folder with model/ and "
                                           f"run.json complete, at most 3 folders deep).")
