"""``modise inspect`` and ``modise benchmark`` (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from modise.cli_options import (
    Device, ModelSize, PrecisionOpt, Preset, RandomWeights, Size, choices_metavar, one_of, PRECISION_ALIASES, size_value,
)

# What benchmark times: fp32 everywhere, or frozen weights stored in bf16 and the rest under bf16 autocast.
BENCH_PRECISIONS = ("auto", "32-true", "bf16-mixed")
BenchPrecision = Annotated[str, typer.Option(
    "--precision", parser=one_of(BENCH_PRECISIONS, PRECISION_ALIASES), metavar=choices_metavar(BENCH_PRECISIONS),
    help="32-true, or bf16-mixed (frozen weights stored in bf16, the rest under bf16 autocast); auto: bf16-mixed on a "
         "GPU that supports it, else 32-true (fp32, bf16 also accepted).")]


def register(app: typer.Typer) -> None:
    """Add ``inspect`` and ``benchmark`` to the ``modise`` app."""

    @app.command("inspect")
    def inspect(
        preset: Preset = "m-odise",
        size: Size = ModelSize.full,
        random_weights: RandomWeights = False,
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    ) -> None:
        """Show a preset's parts (parameters, trainable), feature maps, inference thresholds and optimiser settings."""
        from modise.model import build_model
        from modise.model.benchmark import inspect_model

        model = build_model(preset, size_value(size), random_weights=random_weights)
        report = inspect_model(model)
        report["inference"] = model.config.inference_settings().model_dump()  # the sizes used, not "None: the default"
        if as_json:
            typer.echo(json.dumps(report, indent=2))
            return
        _print_inspect(report)

    @app.command("benchmark")
    def benchmark(
        preset: Preset = "m-odise",
        size: Size = ModelSize.full,
        random_weights: RandomWeights = False,
        device: Device = "auto",
        precision: BenchPrecision = "auto",
        image_size: int = typer.Option(512, "--image-size", help="Square input size in pixels."),
        batch_size: int = typer.Option(1, "--batch-size", min=1, help="Images per call."),
        train: bool = typer.Option(False, "--train", help="Time a training step (forward, loss, backward, AdamW step)."),
        warmup: int = typer.Option(1, "--warmup", min=0, help="Untimed runs first."),
        repeats: int = typer.Option(10, "--repeats", min=1, help="At most this many timed runs (stops when 3 agree within 10%)."),
        as_json: bool = typer.Option(False, "--json", help="Print the timings as JSON on stdout."),
    ) -> None:
        """Seconds per image per stage vs. the frozen diffusion forward (VAE encode + UNet + VAE decoder taps), and peak memory (RSS, CUDA)."""
        from rich.progress import Progress

        from modise.checks import check_device, check_side
        from modise.precision import resolve_precision
        from modise.model import build_model
        from modise.model.benchmark import benchmark_model, resolve_device

        # a typo or no CUDA: one sentence before building anything; auto: cuda when there is one
        device = str(resolve_device(check_device(device)))
        check_side(image_size, "--image-size", multiple=32)  # what train accepts
        precision = "bf16" if resolve_precision(precision, device.split(":")[0]) == "bf16-mixed" else "fp32"
        with Progress(transient=True, console=_stderr()) as bar:
            task = bar.add_task("building", total=None)
            model = build_model(preset, size_value(size), random_weights=random_weights)
            bar.update(task, description="timing", total=warmup + repeats, completed=0)
            res = benchmark_model(model, image_size, batch_size, device, precision, train, warmup=warmup,
                                  max_repeats=repeats, min_repeats=min(3, repeats), progress=lambda: bar.advance(task))
        if as_json:
            typer.echo(json.dumps(res, indent=2))
            return
        _print_benchmark(res)


def _print_benchmark(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"[bold]{r['preset']}[/] ({r['size']}) {r['mode']} at {r['image_size']}x{r['image_size']}, batch "
              f"{r['batch_size']}, {r['precision']} on {r['device_name']} ({r['threads']} CPU threads); "
              f"{r['repeats']} timed runs, {'stable' if r['stable'] else 'NOT stable (spread > 10%)'}")
    t = Table("stage", "s / image", "share", "min .. max")
    for name, seconds, share, spread in benchmark_rows(r):
        t.add_row(name, seconds, share, spread)
    con.print(t)
    frozen = "frozen Swin" if "backbone" in r["stages"] else "VAE encode + UNet + VAE decoder taps"
    con.print(f"ratio to the frozen forward ({frozen}, {r['diffusion_seconds_per_image']:.4f} s): "
              f"{r['overhead_ratio']:.2f}x")
    if r["encode_unet_seconds_per_image"] != r["diffusion_seconds_per_image"]:
        con.print(f"ratio to VAE encode + UNet alone ({r['encode_unet_seconds_per_image']:.4f} s): {r['ratio_to_encode_unet']:.2f}x")
    if "images_per_second" in r:
        con.print(f"training: {r['images_per_second']:.2f} img/s")
    mem = f"peak RSS {r['peak_rss_mb']:.0f} MB"
    if r["peak_cuda_mb"] is not None:
        mem += f", peak CUDA {r['peak_cuda_mb']:.0f} MB"
    con.print(mem)


AFTER_FORWARD = ("clip_ensemble", "postprocess", "backward_and_step")


def benchmark_rows(r: dict) -> list[tuple[str, str, str, str]]:
    """Table rows (stage, s / image, share, min .. max): the forward as a subtotal (share in brackets)
    with its parts indented below it, then what follows it, then the total; the unbracketed shares
    add up to 100 %."""
    stages, total = r["stages"], r["seconds_per_image"]

    def row(name: str, label: str, subtotal: bool = False) -> tuple[str, str, str, str]:
        v = stages[name]
        share = f"{v['seconds_per_image'] / max(total, 1e-12):.0%}"
        return label, f"{v['seconds_per_image']:.4f}", f"({share})" if subtotal else share, f"{v['min']:.4f} .. {v['max']:.4f}"

    parts = [k for k in stages if k not in ("total", "forward", *AFTER_FORWARD)]
    rows = [row("forward", "forward, of which:", subtotal=True)] if "forward" in stages else []
    rows += [row(k, f"  {k}") for k in sorted(parts, key=lambda k: k == "other")]  # "other": the forward's rest
    rows += [row(k, k) for k in AFTER_FORWARD if k in stages]
    return [*rows, row("total", "total")]


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
        taps = Table("diffusion tap", "stride", "summed at stride", "channels")
        for tap in r["taps"]:
            taps.add_row(tap["module"], str(tap["stride"]), str(tap["output_stride"]), str(tap["channels"]))
        con.print(taps)
        w = r["windows"]
        con.print(f"windows: side min({w['window_size']}, {w['internal_size']}, short side), no overlap, resized to "
                  f"{w['internal_size']} px; slide training {'on' if w['slide_training'] else 'off'}; "
                  f"{w['window_batch'] or 'all'} windows per UNet call")
    con.print("feature maps: " + ", ".join(f"stride {m['stride']} x {m['channels']} ch" for m in r["feature_maps"]))
    p = r["parameters"]
    con.print(f"parameters: total {p['total']:,}, trainable {p['trainable']:,}, frozen {p['frozen']:,}")
    con.print(f"diffusion model {r['diffusion_model_id']}; images padded to a multiple of {r['size_divisibility']}")
    for t in r["clip_towers"]:
        con.print(f"{t['part']}: {t['model_id']} ({t['kind']}), MLP activation {t['activation']}")
    con.print("inference: " + ", ".join(f"{k} {v}" for k, v in r["inference"].items()))
    groups = ", ".join(f"{k} {'(the run weight decay)' if v is None else v}" for k, v in r["optimizer"].items())
    con.print("optimiser groups: " + groups)
