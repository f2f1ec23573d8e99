"""``modise predict`` (heavy imports stay inside the command body)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from modise.cli_options import RUN_HELP, Device, Devices, NumNodes, Overwrite, Resume, Workers, auto_device


def _device_count(devices: Optional[str]) -> int:
    """predict's --devices as a process count: a count, the length of an index list, or (auto, -1) every GPU."""
    if devices is None:
        return 1
    if devices in ("auto", "-1"):
        import torch

        return max(1, torch.cuda.device_count())
    return len(devices.split(",")) if "," in devices else int(devices)


def register(app: typer.Typer) -> None:
    """Add ``predict`` to the ``modise`` app."""

    @app.command("predict")
    def predict_cmd(
        checkpoint: Path = typer.Option(..., "--run", "--checkpoint", help=RUN_HELP),
        input: Optional[list[str]] = typer.Option(None, "--input", metavar="FILE|FOLDER|URL",
                                                  help="Image files or folders (PNG, JPEG, TIFF, DICOM), repeatable; or one DICOMweb server "
                                                       "(http://HOST/dicom-web, with --query; credentials from MODISE_DICOMWEB_TOKEN or "
                                                       "MODISE_DICOMWEB_USER/MODISE_DICOMWEB_PASSWORD)."),
        query: Optional[list[str]] = typer.Option(None, "--query", metavar="KEY=VALUE",
                                                  help="QIDO-RS filter on the DICOMweb --input (StudyInstanceUID=..., PatientID=..., "
                                                       "StudyDate=20260101-20261231); repeatable."),
        store: bool = typer.Option(False, "--store", help="Send each image's DICOM SEG and SR to the DICOMweb server by STOW-RS."),
        store_url: Optional[str] = typer.Option(None, "--store-url", metavar="URL", show_default="the --input server",
                                                help="DICOMweb server that --store sends to."),
        data: Optional[Path] = typer.Option(None, "--data", help="Prepared dataset; with --fold, predict that fold's images."),
        fold: Optional[int] = typer.Option(None, "--fold", min=0, metavar="<K>", help="Fold K (0..K-1) of DATA/folds.json to predict (needs --data)."),
        out: Path = typer.Option(..., "--out", help="Output folder (panoptic.json, instances.json, panoptic/, heatmaps/, overlays/, dicom_seg/, dicom_sr/)."),
        dicom: bool = typer.Option(False, "--dicom", help="Write a DICOM SEG and a DICOM SR (TID 1500) per DICOM input."),
        dicom_seg: bool = typer.Option(False, "--dicom-seg", help="Write a DICOM SEG per DICOM input (no SR)."),
        batch_size: int = typer.Option(1, "--batch-size", min=1, help="Images per forward pass."),
        object_mask_threshold: Optional[float] = typer.Option(
            None, "--score-threshold", min=0.0, max=1.0, show_default="the run's", help="Keep segments scoring above this, 0-1."),
        no_overlays: bool = typer.Option(False, "--no-overlays", help="Skip the overlay PNGs."),
        device: Device = "auto",
        full_heatmaps: bool = typer.Option(False, "--full-heatmaps", show_default="the inference resolution",
                                           help="Heatmaps at the image's size."),
        workers: Workers = None,
        resume: Resume = False,
        devices: Devices = None,
        num_nodes: NumNodes = 1,
        overwrite: Overwrite = False,
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    ) -> None:
        """Predict lesions; writes COCO panoptic (with scores), heatmaps, overlays and DICOM SEG / SR.

        Exit code 3 when some inputs failed (each named on stderr and in summary.json; the rest are written)."""
        from modise.checks import check_device
        from modise.engine.prediction.predict import predict_files, remote_options
        from modise.runs import require_complete_run

        device = check_device(device)
        remote = remote_options(input, query, store, store_url)  # usage errors before anything is read
        if remote is not None and (devices is not None or num_nodes > 1):
            from modise.errors import UsageError

            raise UsageError("--devices", "is for files and folders; a DICOMweb run predicts in one process (--workers writes in parallel).")
        require_complete_run(checkpoint)
        kw = dict(dicom_seg=dicom_seg or dicom, dicom_sr=dicom, batch_size=batch_size, overwrite=overwrite, overlays=not no_overlays, device=auto_device(device),
                  object_mask_threshold=object_mask_threshold, data=data, fold=fold, workers=workers or 1, resume=resume,
                  full_heatmaps=full_heatmaps, query=query, store=store, store_url=store_url)
        if devices is not None or num_nodes > 1:
            from modise.engine.prediction.distributed import predict_distributed

            summary = predict_distributed(checkpoint, input, out, devices=_device_count(devices), num_nodes=num_nodes, **kw)
            if summary is None:  # a process started on another node (torchrun / SLURM): rank 0 merges and reports
                return
        else:
            summary = predict_files(checkpoint, input, out, **kw)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            typer.echo(f"{summary['images']} images, {summary['segments']} segments -> {summary['out']}"
                       + (f" ({len(summary['errors'])} problems, see summary.json)" if summary["errors"] else ""))
            if "server" in summary:
                typer.echo(remote_line(summary))
        _exit_on_failed_inputs(summary)


def remote_line(summary: dict) -> str:
    """One line for a DICOMweb run: predicted, skipped by reason, failed, stored."""
    skipped = summary.get("skipped_instances") or {}
    why = ", ".join(f"{n} {reason}" for reason, n in skipped.items())
    line = (f"{summary['server']}: {summary['done']} instances predicted, {sum(skipped.values())} skipped"
            f"{f' ({why})' if why else ''}, {summary['failed']} failed")
    if summary.get("skipped"):
        line += f", {summary['skipped']} already done (--resume)"
    if "stored" in summary:
        line += f"; {summary['stored']} DICOM objects stored"
    return line + "."


def _exit_on_failed_inputs(summary: dict) -> None:
    """Name every failed input on stderr and exit 3 (PartialFailure), so scripts notice."""
    errors = summary.get("errors") or []
    if not errors:
        return
    for e in errors:
        where, what = str(e.get("input")), str(e.get("error"))
        print(f"error: {what if where in what else f'{where}: {what}'}", file=sys.stderr)  # the file named once
    raise typer.Exit(3)
