"""Prepare mammograms for MAM-E fine-tuning: a ``metadata.jsonl`` image folder of 512x512 left-facing
8-bit PNGs + prompts (``file_name``, ``text`` and the fields behind it), as diffusers' training
scripts read it; for inpainting, ``*_mask.png`` beside the images and ``box_stats.json``.

Which rows: :mod:`modise.synthesis.mame_rows`; one image into the frame: :mod:`modise.synthesis.mame_image`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modise.errors import ModiseError
from modise.synthesis.mame_image import Prepared, prepare_image
from modise.synthesis.mame_rows import FINDINGS, group_rows, prepare_group, read_table
from modise.synthesis.prompts import INPAINT_PROMPT, training_caption


def prepare_mame_folder(
    root: Path,
    csv: Path | None,
    out: Path,
    inpainting: bool = False,
    vendor: str | None = None,
    side: int = 512,
    warn: Callable[[str], None] = print,
    findings: str = "lesions",
    all_vendors: bool = False,
    workers: int | None = 1,
) -> list[dict[str, Any]]:
    """Prepare every usable image listed in ``csv`` (default: ``root``'s finding_annotations.csv or
    metadata.csv) into ``out``; returns the ``metadata.jsonl`` records (also written).

    VinDr (a ``finding_categories`` column): healthy images, or with ``inpainting`` one image + box
    per finding of ``findings`` (:data:`FINDINGS`); Siemens images only unless ``all_vendors``, as
    MAM-E used VinDr (``from_dicom2png.py:34-39`` kept the uint16 VOI-LUT outputs into its
    ``siemens15k`` folder; ``masks_generation_vindr.py@10a9966:65`` "only SIEMENS will appear").
    ``workers``: processes reading the images (None: all cores); the output is the same for any number."""
    if findings not in FINDINGS:
        raise ModiseError(f"--findings must be one of {', '.join(FINDINGS)}, not '{findings}'.")
    from modise.data.parallel import convert_items
    from modise.synthesis.metadata import write_metadata_jsonl

    csv = csv or next((root / n for n in ("finding_annotations.csv", "metadata.csv") if (root / n).is_file()), None)
    if csv is None:
        raise ModiseError(f"{root}: no finding_annotations.csv or metadata.csv; pass --csv.")
    rows = read_table(csv)
    groups = group_rows(root, csv, rows, warn)
    records: list[dict[str, Any]] = []
    other_vendors: dict[str, int] = {}

    class _Records:  # what a group's worker recorded, applied here in CSV order (ids = positions)
        def warn(self, msg: str) -> None:
            warn(msg)

        def add(self, path: Path, prep: Any) -> None:
            rec = _write(out, path, prep, inpainting, len(records))
            if prep.notes and not inpainting:
                warn(f"{path}: {', '.join(prep.notes)}; shorter prompt '{rec['text']}'.")
            records.append(rec)

    def on_note(kind: str, maker: Any) -> None:
        if kind == "other_vendor":
            other_vendors[maker] = other_vendors.get(maker, 0) + 1

    ctx = dict(csv=csv, inpainting=inpainting, vendor=vendor, side=side, findings=findings, all_vendors=all_vendors)
    convert_items(prepare_group, ctx, groups.items(), _Records(), workers, on_note=on_note)
    if other_vendors:
        counts = ", ".join(f"{k}: {n}" for k, n in sorted(other_vendors.items()))
        warn(f"{sum(other_vendors.values())} image(s) of other vendors than Siemens left out ({counts}), as MAM-E "
             f"trained on VinDr's Siemens images only; --all-vendors keeps them.")
    if not records:
        raise ModiseError(f"No usable images found through {csv}.")
    write_metadata_jsonl(out / "metadata.jsonl", records)
    if inpainting:
        _write_box_stats(out, records, side, warn)
    return records


def prepare_panoptic(dataset: Path, out: Path, side: int = 512, warn: Callable[[str], None] = print):
    """Inpainting data from a canonical panoptic dataset: every image with lesion (thing) segments."""
    from modise.data.panoptic import IMAGES_DIR, PANOPTIC_DIR, load_panoptic_json, read_id_png
    from modise.synthesis.metadata import write_metadata_jsonl

    data = load_panoptic_json(dataset)
    things = {int(c["id"]) for c in data["categories"] if int(c.get("isthing", 1))}
    anns = {int(a["image_id"]): a for a in data["annotations"]}
    records = []
    for im in data["images"]:
        ann = anns.get(int(im["id"]))
        seg_ids = [s["id"] for s in (ann or {}).get("segments_info", []) if int(s["category_id"]) in things]
        if not seg_ids:
            continue
        try:
            ids = read_id_png(dataset / PANOPTIC_DIR / ann["file_name"])
            prep = prepare_image(dataset / IMAGES_DIR / im["file_name"], im, lesion_mask=np.isin(ids, seg_ids), side=side)
        except (ModiseError, OSError) as e:
            warn(f"{dataset}: image {im['file_name']}: {e} Skipped.")
            continue
        records.append(_write(out, Path(im["file_name"]), prep, True, len(records)))
    if not records:
        raise ModiseError(f"{dataset}: no image with a lesion segment.")
    write_metadata_jsonl(out / "metadata.jsonl", records)
    _write_box_stats(out, records, side, warn)
    return records


def _write_box_stats(out: Path, records: list[dict[str, Any]], side: int, warn: Callable[[str], None]) -> None:
    """MAM-E's inpainting box statistics from the masks just written (``box_stats.json``)."""
    from PIL import Image

    from modise.synthesis.boxes import fit_mame_box_stats, save_box_stats

    masks = [np.asarray(Image.open(out / r["mask_file_name"])) > 127 for r in records if "mask_file_name" in r]
    try:
        save_box_stats(fit_mame_box_stats(masks, side), out)
    except ModiseError as e:
        warn(f"{e} No box_stats.json written; automatic boxes will use the built-in statistics.")


def _write(out: Path, src: Path, prep: Prepared, inpainting: bool, index: int) -> dict[str, Any]:
    from PIL import Image

    name = f"{index:06d}_{src.stem}.png"
    Image.fromarray(prep.pixels).save(out / name)
    f = prep.fields
    # One concept per vendor, as MAM-E captioned its training data (prompts.training_caption).
    text = INPAINT_PROMPT if inpainting else training_caption(f["vendor"], f["view"], f["density"], f["area"])
    rec = {"file_name": name, "text": text, "source": str(src), **f}
    if inpainting and prep.mask is not None:
        mname = f"{index:06d}_{src.stem}_mask.png"
        Image.fromarray(prep.mask.astype(np.uint8) * 255).save(out / mname)
        rec["mask_file_name"] = mname
    return rec

