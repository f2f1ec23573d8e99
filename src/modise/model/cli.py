"""``modise inspect`` and ``modise benchmark`` (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    """Add ``inspect`` and ``benchmark`` to the ``modise`` app."""

    @app.command("inspect")
    def inspect(
        preset: str = typer.Option("m-odise", help="m2f-swinl, m2f-sd, odise, odise-biomedclip, odise-mame, m-odise (or a YAML)."),
        size: str = typer.Option("tiny", help="full | tiny"),
        random_weights: bool = typer.Option(False, "--random-weights", help="Seeded random frozen weights (offline)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
    ) -> None:
        """Show a preset's parts, feature maps (stride, channels) and parameter counts."""
        from modise.model import build_model
        from modise.model.benchmark import inspect_model

        report = inspect_model(build_model(preset, size, random_weights=random_weights))
        if as_json:
            typer.echo(json.dumps(report, indent=2))
            return
        _print_inspect(report)

    @app.command("benchmark")
    def benchmark(
        preset: str = typer.Option("m-odise", help="Preset name or YAML."),
        size: str = typer.Option("tiny", help="full | tiny"),
        random_weights: bool = typer.Option(False, "--random-weights", help="Seeded random frozen weights (offline)."),
        image_size: int = typer.Option(512, help="Square input size in pixels."),
        repeats: int = typer.Option(1, min=1, help="Timed runs per measurement (after one warm-up)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
    ) -> None:
        """Seconds per image end to end vs. the frozen VAE-encode+UNet forward alone, and peak memory."""
        from rich.progress import Progress

        from modise.model import build_model
        from modise.model.benchmark import benchmark_model

        with Progress(transient=True, console=_stderr()) as bar:
            task = bar.add_task("building", total=None)
            model = build_model(preset, size, random_weights=random_weights)
            bar.update(task, description="timing", total=1 + 2 * repeats, completed=0)
            res = benchmark_model(model, image_size, repeats, progress=lambda: bar.advance(task))
        if as_json:
            typer.echo(json.dumps(res, indent=2))
            return
        typer.echo(f"{res['preset']} ({res['size']}) at {image_size}x{image_size}, {res['threads']} threads")
        typer.echo(f"  end to end          {res['seconds_per_image']:.3f} s/image")
        typer.echo(f"  VAE encode + UNet   {res['diffusion_seconds_per_image']:.3f} s/image")
        typer.echo(f"  overhead ratio      {res['overhead_ratio']:.2f}x")
        typer.echo(f"  peak RSS            {res['peak_rss_mb']:.0f} MB")


def _stderr():
    from rich.console import Console

    return Console(stderr=True)


def _print_inspect(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"[bold]{r['preset']}[/] ({r['size']}{', random weights' if r['random_weights'] else ''}): "
              f"backbone {r['diffusion']}, captioner {r['captioner']}, class head {r['class_head']}, "
              f"{r['num_queries']} queries, hidden {r['hidden_dim']}, {r['dec_layers']} decoder layers")
    t = Table("part", "class", "parameters", "trainable")
    for name, p in r["parts"].items():
        t.add_row(name, p["class"], f"{p['total']:,}", f"{p['trainable']:,}")
    con.print(t)
    if "taps" in r:
        taps = Table("diffusion tap", "stride", "channels")
        for tap in r["taps"]:
            taps.add_row(tap["module"], str(tap["stride"]), str(tap["channels"]))
        con.print(taps)
    con.print("feature maps: " + ", ".join(f"stride {m['stride']} x {m['channels']} ch" for m in r["feature_maps"]))
    p = r["parameters"]
    con.print(f"parameters: total {p['total']:,}, trainable {p['trainable']:,}, frozen {p['frozen']:,}")
