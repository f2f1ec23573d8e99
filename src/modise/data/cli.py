"""Command registration for this part (filled in by its issue)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``modise`` app."""
