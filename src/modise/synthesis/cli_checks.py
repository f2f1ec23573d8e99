"""Option checks at the command-line edge of the synthesis commands (Typer callbacks).

A bad value stops the command before anything is loaded or written: Typer prints one
sentence naming the option and exits with status 2.
"""

from __future__ import annotations

import typer


def positive(value: float | None) -> float | None:
    """Callback: a number > 0 (or not given)."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value:g} is not above 0.")
    return value


def side(value: int | None) -> int | None:
    """Callback: an image side that is a positive multiple of 8 (the VAE's downscale), or not given."""
    if value is not None and (value < 8 or value % 8):
        raise typer.BadParameter(f"{value} is not a positive multiple of 8 (the VAE's downscale).")
    return value
