"""``modise prepare ...``: convert datasets to the canonical COCO panoptic layout."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from modise.cli_options import MaxImageSize, ModiseTyper, Overwrite, Workers


class Modality(str, Enum):
    DM = "DM"
    CM = "CM"
    both = "both"


prepare_app = ModiseTyper(
    help="Convert CDD-CESM, VinDr-Mammo, your own folders or synthetic phantoms to the canonical panoptic layout.",
    no_args_is_help=True,
)

Out = Annotated[Path, typer.Option("--out", help="Output dataset folder (refused if not empty unless --overwrite).")]
Strict = Annotated[bool, typer.Option("--strict", help="Stop with an error at the first bad item instead of skipping it.")]
Folds = Annotated[int, typer.Option("--folds", min=1, help="Patient-level cross-validation folds to make (K).")]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Seed for the folds (and phantoms).")]
Json = Annotated[bool, typer.Option("--json", help="Print the prepare report as JSON on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or per-item messages.")]


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _done(report: dict[str, Any], out: Path, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    per = ", ".join(f"{k}: {v}" for k, v in report["segments_per_class"].items())
    typer.echo(
        f"{report['converted']} images converted, {report['skipped_count']} skipped -> {out} "
        f"({per}; {report.get('patients', '?')} patients in {report['folds']} folds; {report['images_per_s']} images/s). "
        f"Details: {out / 'prepare_report.json'}"
    )
    if "patient_ids" in report:
        typer.echo(f"patient ids: {report['patient_ids']['rule']}.")


@prepare_app.command("cdd-cesm")
def cdd_cesm(
    root: Annotated[Path, typer.Option("--root", help="CDD-CESM release folder (image folders, .xlsx, VIA .csv).")],
    out: Out,
    modality: Annotated[Modality, typer.Option("--modality", case_sensitive=False, help="DM (low energy), CM (subtracted) or both.")] = Modality.both,
    include_normal: Annotated[bool, typer.Option("--include-normal", help="Keep Normal images (no lesions).")] = False,
    max_size: MaxImageSize = None,
    folds: Folds = 5,
    seed: Seed = 0,
    strict: Strict = False,
    overwrite: Overwrite = False,
    as_json: Json = False,
    quiet: Quiet = False,
    workers: Workers = None,
) -> None:
    """CDD-CESM: one VIA region = one instance, class = the image's pathology (Benign/Malignant)."""
    from modise.data.cdd_cesm import prepare_cdd_cesm

    report = prepare_cdd_cesm(root, out, Modality(modality).value, include_normal, max_size, strict, overwrite, folds, seed, quiet,
                              workers=workers)
    _done(report, out, as_json)


class PseudoMaskRecipe(str, Enum):
    paper = "paper"
    refined = "refined"


@prepare_app.command("vindr")
def vindr(
    root: Annotated[Path, typer.Option("--root", help="VinDr-Mammo folder (finding_annotations.csv, images/).")],
    out: Out,
    classes: Annotated[Optional[list[str]], typer.Option(
        "--classes", metavar="<class,..>", show_default="BI-RADS 3,4,5", help="Lesion classes to keep: BI-RADS grades, e.g. 3,4,5.")] = None,
    sigma: Annotated[float, typer.Option("--sigma", min=0.0, help="Gaussian blur sigma (px) of the box pseudo-masks.")] = 7.0,
    include_normal: Annotated[bool, typer.Option("--include-normal", help="Keep images without a chosen finding.")] = False,
    max_size: MaxImageSize = None,
    folds: Folds = 5,
    seed: Seed = 0,
    strict: Strict = False,
    overwrite: Overwrite = False,
    as_json: Json = False,
    quiet: Quiet = False,
    pseudo_mask: Annotated[PseudoMaskRecipe, typer.Option(
        "--pseudo-mask", help="paper: blur, Otsu, concave hull as the M-ODISE paper | refined: modise's (centre "
        "prior, nearest component, holes filled; closer to radiologists: docs/benchmarks.md).")] = "paper",
    workers: Workers = None,
) -> None:
    """VinDr-Mammo: DICOM -> 8-bit PNG, each box -> a pseudo-mask segment, class by finding_birads."""
    from modise.data.vindr import prepare_vindr

    report = prepare_vindr(root, out, _split(classes), sigma, include_normal, max_size, strict, overwrite, folds, seed,
                           quiet, pseudo_mask=getattr(pseudo_mask, "value", pseudo_mask), workers=workers)
    _done(report, out, as_json)


@prepare_app.command("folder")
def folder(
    images: Annotated[Path, typer.Option("--images", help="Folder of PNG/JPEG/TIFF/DICOM images.")],
    masks: Annotated[Path, typer.Option("--masks", help="Folder of masks with the same names (PNG/TIFF binary or instance ids; JPEG read as binary).")],
    out: Out,
    classes: Annotated[Optional[list[str]], typer.Option(
        "--classes", metavar="<class,..>", show_default="lesion", help="Lesion classes to create; with several, masks/<class>/ sub-folders.")] = None,
    max_size: MaxImageSize = None,
    folds: Folds = 5,
    seed: Seed = 0,
    strict: Strict = False,
    overwrite: Overwrite = False,
    as_json: Json = False,
    quiet: Quiet = False,
    min_area: Annotated[int, typer.Option("--min-area", min=0, help="Drop mask pieces smaller than this many pixels.")] = 16,
    patient_regex: Annotated[Optional[str], typer.Option(
        "--patient-regex",
        help="Regular expression whose first group (else whole match) in the file name is the patient id, for images "
             "without a DICOM PatientID.",
        show_default="the first _-separated part holding a digit, e.g. P150 in flipped_P150_L_DM_CC")] = None,
    workers: Workers = None,
) -> None:
    """Your own data: images and masks matched by name; folds never split a patient."""
    from modise.data.folder import prepare_folder

    report = prepare_folder(images, masks, out, _split(classes), max_size, strict, overwrite, folds, seed, quiet, min_area,
                            patient_regex=patient_regex, workers=workers)
    _done(report, out, as_json)


@prepare_app.command("synthetic")
def synthetic(
    out: Out,
    n: Annotated[int, typer.Option("--n", min=1, help="Number of images (patients with a CC and an MLO view).")] = 40,
    seed: Seed = 0,
    size: Annotated[int, typer.Option("--image-size", min=64, help="Image side in pixels.")] = 256,
    folds: Folds = 5,
    overwrite: Overwrite = False,
    as_json: Json = False,
    quiet: Quiet = False,
) -> None:
    """Synthetic phantom mammograms with circumscribed and spiculated masses (deterministic from --seed)."""
    from modise.checks import check_disk_room, check_side
    from modise.data.phantoms import prepare_synthetic

    check_side(size, "--image-size", minimum=64)
    check_disk_room(out, n * 2, 2 * size * size)  # a CC and an MLO view per patient, image + label PNG
    report = prepare_synthetic(out, n=n, seed=seed, size=size, overwrite=overwrite, k=folds, quiet=quiet)
    _done(report, out, as_json)


def register(app: typer.Typer) -> None:
    """Add the ``prepare`` command group to the ``modise`` app."""
    app.add_typer(prepare_app, name="prepare")
