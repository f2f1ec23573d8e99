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


def choice(allowed: tuple[str, ...]):
    """Callback factory: one of ``allowed`` (case-insensitive), returned as spelled in ``allowed``."""

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        for a in allowed:
            if str(value).strip().lower() == a.lower():
                return a
        raise typer.BadParameter(f"'{value}' is not one of: {', '.join(allowed)}.")

    return check


def density_choice(value: str | None) -> str | None:
    """Callback: a MAM-E density word or a BI-RADS letter A-D."""
    from modise.errors import ModiseError
    from modise.synthesis.prompts import density_word

    try:
        density_word(value)
    except ModiseError:
        raise typer.BadParameter(f"'{value}' is not very low, low, high, very high or a BI-RADS letter A-D.") from None
    return value
