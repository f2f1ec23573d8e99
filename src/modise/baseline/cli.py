"""``modise export nnunet`` and ``modise baseline nnunet`` (nnU-Net is imported only by the baseline's worker)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from modise.cli_options import ModiseTyper, Overwrite

Data = Annotated[Path, typer.Option("--data", help="Prepared dataset (canonical panoptic layout with folds.json).")]
DatasetId = Annotated[int, typer.Option("--dataset-id", min=1, max=999, help="nnU-Net dataset id (the NNN of DatasetNNN_Name).")]


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


export_app = ModiseTyper(help="Write a prepared dataset in another tool's layout.", no_args_is_help=True)
baseline_app = ModiseTyper(help="Train and score external baselines on the same data and folds as the presets.", no_args_is_help=True)


@export_app.command("nnunet")
def export_nnunet_cmd(
    data: Data,
    out: Annotated[Path, typer.Option("--out", help="nnU-Net raw folder (nnUNet_raw): DatasetNNN_Name/ is written inside it.")],
    dataset_id: DatasetId,
    name: Annotated[Optional[str], typer.Option("--name", metavar="<name>", show_default="the --data folder's name", help="Dataset name (letters and digits).")] = None,
    overwrite: Overwrite = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """nnU-Net v2 raw dataset: imagesTr/labelsTr (semantic lesion labels, one grey channel), dataset.json, splits_final.json = folds.json."""
    from modise.baseline.nnunet_export import export_nnunet

    summary = export_nnunet(data, out, dataset_id, name, overwrite=overwrite, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"{summary['cases']} cases, labels {', '.join(summary['labels'])}, {summary['folds']} folds -> {summary['folder']} "
                   "(copy splits_final.json into nnUNet_preprocessed/<dataset>/ after planning to train on modise's folds)")


@baseline_app.command("nnunet")
def baseline_nnunet_cmd(
    data: Data,
    out: Annotated[Path, typer.Option("--out", help="Folder: nnUNet_raw/_preprocessed/_results, fold<k>/ (predictions, metrics.json), report/.")],
    folds: Annotated[int, typer.Option("--folds", min=1, help="Folds 0..K-1 of folds.json, each held out once.")] = 5,
    configuration: Annotated[str, typer.Option("--configuration", metavar="<2d|3d_fullres|...>", help="nnU-Net configuration (2D mammograms: 2d).")] = "2d",
    trainer: Annotated[str, typer.Option("--trainer", metavar="<class>", help="nnU-Net trainer class: nnUNetTrainer (1000 epochs), nnUNetTrainer_100epochs, ... "
                                                          "or nnUNetTrainer_modiseSmoke (a few CPU iterations, for checks).")] = "nnUNetTrainer",
    device: Annotated[Device, typer.Option("--device", help="auto: cuda when available, else cpu.")] = Device.auto,
    min_area: Annotated[int, typer.Option("--min-area", min=0, help="Drop connected components smaller than this many pixels.")] = 0,
    dataset_id: DatasetId = 1,
    processes: Annotated[int, typer.Option("--processes", min=1, help="Processes for nnU-Net's fingerprint and preprocessing.")] = 2,
    overwrite: Overwrite = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the row (report.json) as JSON on stdout.")] = False,
) -> None:
    """nnU-Net v2 as an external Table-1 row: plan, train and predict each fold with nnU-Net, instances = connected components, scored by evaluate.

    Finished folds are kept and a started one resumes; --overwrite starts again."""
    from modise.baseline.nnunet_run import run_nnunet_baseline
    from modise.engine.evaluation.report import table_markdown

    result = run_nnunet_baseline(data, out, folds, configuration=configuration, trainer=trainer, device=Device(device).value,
                                 min_area=min_area, dataset_id=dataset_id, processes=processes, overwrite=overwrite, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        typer.echo(table_markdown(result["variants"]), nl=False)
        typer.echo(f"written to {out / 'report'}")


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``baseline`` to the ``modise`` app."""
    app.add_typer(export_app, name="export")
    app.add_typer(baseline_app, name="baseline")
