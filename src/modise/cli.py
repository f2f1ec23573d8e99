"""The ``modise`` command line: a thin shell over the parts' own command modules.

Each part registers its commands (``register(app)``) and keeps heavy imports (torch,
diffusers) inside the command bodies, so ``modise --help`` stays fast.
"""

from __future__ import annotations

import os
import sys

import typer

from modise.cli_options import ModiseTyper, Threads, limit_threads  # noqa: F401  (limit_threads: public here too)
from modise.errors import ModiseError

app = ModiseTyper(
    name="modise",
    help="M-ODISE breast-lesion panoptic segmentation and MAM-E mammogram synthesis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from modise import __version__

        typer.echo(f"modise {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    threads: Threads = None,
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version, help="Print the version and exit."),
) -> None:
    """M-ODISE breast-lesion panoptic segmentation and MAM-E mammogram synthesis."""


def _register_all() -> None:
    from modise.app import cli as app_cli
    from modise.baseline import cli as baseline_cli
    from modise.data import cli as data_cli
    from modise.engine import compare_cli, eval_cli, predict_cli, reproduce_cli, train_cli
    from modise.model import cli as model_cli
    from modise.synthesis import cli as synthesis_cli

    for module in (data_cli, eval_cli, compare_cli, model_cli, train_cli, predict_cli, reproduce_cli, baseline_cli, synthesis_cli, app_cli):
        module.register(app)


_register_all()


@app.command("version")
def version() -> None:
    """Print the modise version (also: modise --version)."""
    from modise import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point: run the app, turning user errors into one sentence and their exit code (see modise.errors)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except ModiseError as e:
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)  # "[nnunet]" is text
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, SystemExit) as e:
        # Typer turns Ctrl-C inside a command into a silent exit 130
        if isinstance(e, SystemExit) and e.code != 130:
            raise
        print("interrupted (Ctrl-C) before the command finished; run it again to get its output.", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
