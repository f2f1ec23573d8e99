"""Beside the paper's mean ± std over folds: the pooled out-of-fold estimate with its patient-level CI,
and every variant against a reference (m-odise) by the paired patient-level bootstrap.

Both need each fold's held-out predictions (``<run>/fold<k>/predictions/``: written by ``modise
reproduce`` and by the nnU-Net baseline); a variant without them for every fold is left out, said so.
The pooled estimate scores all folds' predictions together against the dataset (each image once,
predicted by the fold that held it out), at the pooled best-PQ threshold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modise.errors import ModiseError

from .bootstrap import DEFAULT_REPLICATES
from .compare import paired_comparison
from .evaluator import PanopticEvaluator
from .froc import ALL

PREDICTIONS_DIR = "predictions"
REFERENCE = "m-odise"


def _data_of(run: Path) -> Path | None:
    """The dataset a fold run was trained / scored on (config.yaml, else its parent's settings)."""
    import yaml

    cfg = run / "config.yaml"
    if cfg.is_file():
        data = (yaml.safe_load(cfg.read_text()) or {}).get("data")
        if data:
            return Path(data)
    for settings in (run.parent / "baseline.json", run.parent.parent / "reproduce.json"):
        if settings.is_file():
            s = json.loads(settings.read_text())
            data = s.get("data") or s.get("settings", {}).get("data")
            if data:
                return Path(data)
    return None


def variant_predictions(items: list[tuple[Path, dict]]) -> tuple[Path, list[Path]] | str:
    """(dataset, each fold's predictions folder) of a variant's folds, or why not."""
    preds, datas = [], set()
    for metrics_path, _ in items:
        run = Path(metrics_path).parent
        p = run / PREDICTIONS_DIR
        if not (p / "panoptic.json").is_file():
            return f"{run} has no {PREDICTIONS_DIR}/ (held-out predictions)"
        data = _data_of(run)
        if data is None:
            return f"{run}: the dataset it was trained on is not recorded"
        preds.append(p)
        datas.add(str(Path(data).resolve()))
    if len(datas) != 1:
        return "its folds were trained on different datasets"
    return Path(datas.pop()), preds


def pooled_estimate(data: Path, preds: list[Path], bootstrap: int, seed: int) -> dict[str, Any]:
    """PQ/RQ/SQ/AP/Dice (%) and the all-lesion CPM of the pooled out-of-fold predictions, each with its CI."""
    from .compare import predicted_pairs
    from .folders import score_pairs

    cats, pairs, done = predicted_pairs(data, preds, None, "instances")
    pairs = [p for p in pairs if p.image_id in done]
    if not pairs:
        raise ModiseError(f"No image of '{data}' is predicted in {', '.join(map(str, preds))}.")
    ev = PanopticEvaluator(cats)
    for r in score_pairs(pairs, ev.cat_index, ev.thresholds, None, ev.instance_classes, ev.froc):
        ev.add_result(r)
    m = ev.compute(bootstrap=bootstrap, seed=seed, images={p.image_id: p.record or {} for p in pairs})
    b = m["best"]
    out = {"images": len(pairs), "threshold": b["threshold"], "ap_source": m["ap_source"]}
    for key, v in (("pq", b["pq"]), ("rq", b["rq"]), ("sq", b["sq"]), ("ap", b["ap"]), ("dice", m["dice"])):
        out[key] = {"value": v, "ci": (m.get("ci") or {}).get(key)}
    if "froc" in m:
        f = m["froc"][ALL]
        out["cpm"] = {"value": f["cpm"], "ci": f.get("ci")}
    if m.get("bootstrap", {}).get("note"):
        out["note"] = m["bootstrap"]["note"]
    out["patients"] = m.get("bootstrap", {}).get("patients")
    return out


def pooled_and_paired(variants: dict[str, list[tuple[Path, dict]]], bootstrap: int = DEFAULT_REPLICATES, seed: int = 0,
                      reference: str = REFERENCE) -> dict[str, Any]:
    """``{"pooled": {variant: estimate}, "paired": {variant: compare.json's metrics vs reference}, "skipped": [why]}``."""
    found, skipped = {}, []
    for name, items in variants.items():
        got = variant_predictions(items)
        if isinstance(got, str):
            skipped.append(f"{name}: {got}")
        else:
            found[name] = got
    pooled = {name: pooled_estimate(data, preds, bootstrap, seed) for name, (data, preds) in found.items()}
    paired = {}
    if reference in found:
        ref_data, ref_preds = found[reference]
        for name, (data, preds) in found.items():
            if name == reference:
                continue
            if data != ref_data:
                skipped.append(f"{name}: trained on another dataset than {reference}; not compared")
                continue
            res = paired_comparison(data, preds, ref_preds, bootstrap=bootstrap, seed=seed, names=(name, reference))
            paired[name] = {"metrics": res["metrics"], "n_images": res["n_images"], "n_patients": res["n_patients"],
                            "method": res["method"]}
    return {"pooled": pooled, "paired": paired, "reference": reference, "skipped": skipped,
            "bootstrap": {"replicates": bootstrap, "seed": seed}}


def _cell(e: dict | None, digits: int = 1) -> str:
    if not e or e.get("value") is None:
        return "n/a"
    ci = e.get("ci")
    return f"{e['value']:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci and ci[0] is not None else "")


def pooled_markdown(result: dict[str, Any]) -> str:
    """The pooled table and the paired table (empty string when there is nothing to show)."""
    md = ""
    if result["pooled"]:
        md += ("\n## Pooled out-of-fold estimate (each fold's predictions/, at the model's own inference setting; "
               f"95 % CI: patient-level bootstrap, {result['bootstrap']['replicates']} replicates)\n\n| variant | images | t | RQ | SQ | PQ | AP | Dice | CPM |\n"
               "|---|---|---|---|---|---|---|---|---|\n")
        for name, e in result["pooled"].items():
            md += (f"| {name} | {e['images']} | {e['threshold']:.2f} | " + " | ".join(_cell(e.get(k)) for k in ("rq", "sq", "pq", "ap", "dice"))
                   + f" | {_cell(e.get('cpm'), 3)} |\n")
    if result["paired"]:
        md += (f"\n## Against {result['reference']} (A − B on the same images; paired patient-level bootstrap)\n\n"
               "| variant | ΔPQ | ΔRQ | ΔSQ | ΔAP | ΔDice | ΔCPM |\n|---|---|---|---|---|---|---|\n")
        for name, r in result["paired"].items():
            cells = []
            for k in ("pq", "rq", "sq", "ap", "dice", "cpm"):
                m = r["metrics"].get(k)
                if not m or m["diff"] is None:
                    cells.append("n/a")
                    continue
                d = 3 if k == "cpm" else 1
                ci = m["ci"]
                cells.append(f"{m['diff']:+.{d}f}" + (f" [{ci[0]:+.{d}f}, {ci[1]:+.{d}f}]" if ci[0] is not None else "")
                             + f", p {'< 0.001' if m['p'] is not None and m['p'] < 0.001 else _p(m['p'])}")
            md += f"| {name} | " + " | ".join(cells) + " |\n"
        md += f"\n{next(iter(result['paired'].values()))['method']}.\n"
    if result["skipped"]:
        md += "\n" + "".join(f"- not pooled: {s}\n" for s in result["skipped"])
    return md


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3f}"


__all__ = ["pooled_and_paired", "pooled_markdown", "pooled_estimate", "variant_predictions"]
