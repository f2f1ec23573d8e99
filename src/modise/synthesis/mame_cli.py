"""``modise mame prepare`` and ``modise mame train``: teach Stable Diffusion a mammography domain."""

from __future__ import annotations

import typer

mame_app = typer.Typer(help="Train your own MAM-E: prepare mammograms with prompts, fine-tune SD.", no_args_is_help=True)
