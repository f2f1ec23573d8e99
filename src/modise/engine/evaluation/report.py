"""``write_report``: the paper's Table 1 / Table 2 from many evaluations.

A run is a training run (``RUN/config.yaml`` with ``preset``, metrics in
``RUN/metrics.json``), a cross-validation folder holding ``fold*/`` runs, a bare folder
with ``metrics.json`` (or the file itself). Runs of the same variant (preset, else folder
name; a bare ``foldK`` folder takes its parent's name) are folds: mean ± sample std.

The threshold of a variant's row (``rule="mean-best"``, the default) is the IoU threshold
with the best PQ averaged over its folds (smallest on ties, as for one evaluation); every
column is then the folds' mean ± std at that one t. ``rule="fold-best"`` takes each fold at
its own best t instead (the t column then lists them all).

``clip_ensemble`` picks which of a run's evaluations a row reads: ``None`` the one at the run's own
setting, ``True`` / ``False`` the one with / without ODISE's CLIP ensemble (a run of a model with a
CLIP-style encoder records both; other models have one, used either way).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modise.errors import ModiseError
from modise.outputs import output_dir, write_bytes_atomic, write_json_atomic

COLUMNS = (("RQ_t", "rq"), ("SQ_t", "sq"), ("PQ_t", "pq"), ("AP_t", "ap"), ("Dice", "dice"))
RULES = ("mean-best", "fold-best")
SETTINGS_JSON = "reproduce.json"  # marks a `modise reproduce` folder (written by engine/reproduce.py)
EXTERNAL_MARK = " †"  # after an external baseline's name in the tables
_FOLD = re.compile(r"^fold[_-]?\d+$", re.IGNORECASE)


def _read_metrics(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise ModiseError(f"{path}: cannot read ({e.strerror}).") from None
    except ValueError as e:
        raise ModiseError(f"{path}: invalid JSON ({e}).") from None
    stack = [data]
    while stack:  # the evaluation dict may be nested (e.g. under 'val')
        d = stack.pop(0)
        if isinstance(d, dict):
            if isinstance(d.get("best"), dict) and "thresholds" in d and "pq" in d:
                return d
            stack.extend(v for v in d.values() if isinstance(v, dict))
    return None


def _preset(run: Path) -> str | None:
    cfg = run / "config.yaml"
    if not cfg.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(cfg.read_text())
    except yaml.YAMLError:
        raise ModiseError(f"{cfg}: invalid YAML.") from None
    preset = data.get("preset") if isinstance(data, dict) else None
    return str(preset) if preset else None


def _expand_reproduce(runs) -> list[Path]:
    """A ``modise reproduce`` folder stands for its variant folders (``<preset>/fold*``)."""
    out = []
    for run in runs:
        if run.is_dir() and (run / SETTINGS_JSON).is_file():
            out += sorted(d for d in run.iterdir() if d.is_dir() and any(_FOLD.match(f.name) for f in d.iterdir() if f.is_dir()))
        else:
            out.append(run)
    return out


def collect_runs(runs: Sequence[Path], clip_ensemble: bool | None = None) -> tuple[dict[str, list[tuple[Path, dict]]], list[str]]:
    """Variant name -> [(metrics path, metrics)], plus warnings about skipped runs."""
    from .validate import with_clip_ensemble

    variants: dict[str, list[tuple[Path, dict]]] = {}
    warnings: list[str] = []

    seen: set[Path] = set()

    def add(run_dir: Path, metrics_path: Path, fallback_name: str) -> None:
        if metrics_path.resolve() in seen:  # `report run run` (or a fold given twice) counts once
            warnings.append(f"{metrics_path}: given more than once; counted once.")
            return
        seen.add(metrics_path.resolve())
        m = _read_metrics(metrics_path)
        if m is None:
            warnings.append(f"{metrics_path}: holds no evaluation metrics (no held-out fold?); skipped.")
            return
        m = with_clip_ensemble(m, clip_ensemble)
        name = str(m.get("variant") or "") or _preset(run_dir) or fallback_name  # "variant": an external baseline's metrics
        variants.setdefault(name, []).append((metrics_path, m))

    for run in _expand_reproduce(map(Path, runs)):
        if run.is_file():
            add(run.parent, run, run.parent.name)
        elif not run.is_dir():
            raise ModiseError(f"Run '{run}' does not exist.")
        elif (run / "metrics.json").is_file():
            parent_name = run.resolve().parent.name if _FOLD.match(run.name) else run.resolve().name
            add(run, run / "metrics.json", _preset(run.resolve().parent) or parent_name)
        else:
            folds = sorted(p for p in run.iterdir() if p.is_dir() and _FOLD.match(p.name))
            if not folds:
                raise ModiseError(f"Run '{run}' has neither a metrics.json nor fold*/ runs.")
            name = _preset(run) or run.resolve().name
            for f in folds:
                if (f / "metrics.json").is_file():
                    add(f, f / "metrics.json", name)
                else:
                    warnings.append(f"{f}: no metrics.json (unfinished fold?); skipped.")
    if not variants:
        raise ModiseError("No run with evaluation metrics found among: " + ", ".join(map(str, runs)) + ".")
    return variants, warnings


def _stats(values: list[float | None]) -> tuple[float | None, float | None, int]:
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return None, None, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def table1_order(names: Sequence[str]) -> list[str]:
    """The presets' order (:func:`modise.model.presets.preset_names`: the paper's rows), any other variant after them as given."""
    from modise.model.presets import preset_names

    names = list(names)
    rank = {name: i for i, name in enumerate(preset_names())}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), names.index(n)))


def _at_threshold(m: dict, t_index: int, key: str, name: str, warnings: list[str]) -> float | None:
    """A fold's ``key`` value at ``thresholds[t_index]`` (AP from the per-threshold list, or
    from ``best`` when that is the same threshold)."""
    if key == "dice":
        return m["dice"]
    values = m.get(key)
    if isinstance(values, list) and len(values) == len(m["thresholds"]):
        return values[t_index]
    if abs(m["best"]["threshold"] - m["thresholds"][t_index]) < 1e-12:
        return m["best"].get(key)
    warnings.append(f"{name}: a fold has no {key.upper()} per threshold (older metrics.json); left out of {key.upper()}_t.")
    return None


def summarise(variants: dict[str, list[tuple[Path, dict]]], rule: str = "mean-best", warnings: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per variant (in Table-1 order, others after): mean ± std over folds of each column."""
    from .panoptic_quality import best_index

    if rule not in RULES:
        raise ModiseError(f"Threshold rule '{rule}' is not one of {', '.join(RULES)}.")
    warnings = [] if warnings is None else warnings
    rows = []
    for name in table1_order(variants):
        items = variants[name]
        ms = [m for _, m in items]
        row: dict[str, Any] = {"variant": name, "folds": len(ms), "runs": [str(p) for p, _ in items], "rule": rule}
        same_t = len({tuple(m["thresholds"]) for m in ms}) == 1
        if rule == "mean-best" and not same_t:
            warnings.append(f"{name}: folds were evaluated at different thresholds; each fold is taken at its own best t.")
        if rule == "mean-best" and same_t:
            mean_pq = np.nanmean(np.array([[np.nan if v is None else v for v in m["pq"]] for m in ms], dtype=float), axis=0)
            b = best_index(mean_pq)
            row["thresholds_t"] = [ms[0]["thresholds"][b]]
            for col, key in COLUMNS:
                row[col] = dict(zip(("mean", "std", "n"), _stats([_at_threshold(m, b, key, name, warnings) for m in ms])))
        else:
            row["thresholds_t"] = [m["best"]["threshold"] for m in ms]
            for col, key in COLUMNS:
                vals = [m["dice"] if key == "dice" else m["best"].get(key) for m in ms]
                row[col] = dict(zip(("mean", "std", "n"), _stats(vals)))
        row["ap_source"] = "/".join(sorted({str(m.get("ap_source", "panoptic")) for m in ms}))
        external = [m["external_baseline"] for m in ms if m.get("external_baseline")]
        if external:  # not a preset of the paper: a baseline trained by its own code (e.g. nnU-Net)
            row["external"] = external[0]
        rows.append(row)
    for col, _ in COLUMNS:  # best value per column (ties all marked)
        means = [r[col]["mean"] for r in rows if r[col]["mean"] is not None]
        top = max(means) if means else None
        for r in rows:
            r[col]["best"] = bool(top is not None and r[col]["mean"] is not None and abs(r[col]["mean"] - top) <= 1e-9)
    return rows


def _fmt(cell: dict[str, Any], md: bool) -> str:
    if cell["mean"] is None:
        return "n/a"
    s = f"{cell['mean']:.1f} ± {cell['std']:.1f}" if cell["n"] > 1 else f"{cell['mean']:.1f}"
    return (f"**{s}**" if md else s + " *") if cell["best"] else s


def _t_text(ts: list[float]) -> str:
    u = sorted(set(ts))
    return "/".join(f"{t:.2f}" for t in u)


def table_markdown(rows: list[dict[str, Any]]) -> str:
    head = "| variant | folds | t | " + " | ".join(c for c, _ in COLUMNS) + " |\n"
    head += "|---" * (3 + len(COLUMNS)) + "|\n"
    body = "".join(
        f"| {r['variant']}{EXTERNAL_MARK if r.get('external') else ''} | {r['folds']} | {_t_text(r['thresholds_t'])} | " + " | ".join(_fmt(r[c], True) for c, _ in COLUMNS) + " |\n"
        for r in rows
    )
    return head + body


def table_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["variant", "folds", "t"] + [f"{c}_{s}" for c, _ in COLUMNS for s in ("mean", "std")] + ["best_in"])
    for r in rows:
        nums = []
        for c, _ in COLUMNS:
            nums += ["" if r[c]["mean"] is None else f"{r[c]['mean']:.4f}", "" if r[c]["std"] is None else f"{r[c]['std']:.4f}"]
        w.writerow([r["variant"], r["folds"], _t_text(r["thresholds_t"])] + nums + [";".join(c for c, _ in COLUMNS if r[c]["best"])])
    return buf.getvalue()


def sweep_curves(variants: dict[str, list[tuple[Path, dict]]], warnings: list[str]) -> dict[str, dict[str, tuple]]:
    """Metric ("pq", "rq", "sq", "ap") -> variant -> (thresholds, mean, std over folds), in
    Table-1 order; AP only where every fold has it per threshold."""
    curves: dict[str, dict[str, tuple]] = {"pq": {}, "rq": {}, "sq": {}, "ap": {}}
    for name in table1_order(variants):
        items = variants[name]
        ts = [tuple(m["thresholds"]) for _, m in items]
        if len(set(ts)) != 1:
            warnings.append(f"{name}: folds were evaluated at different thresholds; left out of the sweep figures.")
            continue
        for key in curves:
            if not all(isinstance(m.get(key), list) and len(m[key]) == len(ts[0]) for _, m in items):
                continue
            v = np.array([[np.nan if x is None else x for x in m[key]] for _, m in items], dtype=float)
            std = np.nanstd(v, axis=0, ddof=1) if len(items) > 1 else np.zeros(v.shape[1])
            curves[key][name] = (np.array(ts[0]), np.nanmean(v, axis=0), np.nan_to_num(std))
    return curves


def sweep_csv(curves: dict[str, dict[str, tuple]]) -> str:
    """One line per variant and threshold: mean and std of PQ, RQ, SQ, AP over folds (%)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = [k for k in ("pq", "rq", "sq", "ap") if curves.get(k)]
    w.writerow(["variant", "t"] + [f"{k.upper()}_{s}" for k in keys for s in ("mean", "std")])
    for name, (t, _, _) in curves["pq"].items():
        for i, ti in enumerate(t):
            cells = []
            for k in keys:
                mean, std = (curves[k][name][1][i], curves[k][name][2][i]) if name in curves[k] else (np.nan, np.nan)
                cells += ["" if np.isnan(mean) else f"{mean:.4f}", "" if np.isnan(std) else f"{std:.4f}"]
            w.writerow([name, f"{ti:.2f}"] + cells)
    return buf.getvalue()


ENSEMBLE_NOTES = {
    None: "CLIP ensemble: as each run's model is set.\n",
    True: "CLIP ensemble: on for every model with a CLIP-style encoder (ODISE's PoolingCLIPHead, inference only).\n",
    False: "CLIP ensemble: off (the same trained models, class head alone).\n",
}


def _protocol_note(rows: list[dict[str, Any]], rule: str) -> str:
    how = ("t: the IoU threshold with the best PQ averaged over folds; every column at that t" if rule == "mean-best"
           else "t: each fold's own best-PQ IoU threshold")
    sources = sorted({r["ap_source"] for r in rows})
    external = "".join(f"{EXTERNAL_MARK.strip()} {r['variant']}: external baseline, {r['external']}.\n" for r in rows if r.get("external"))
    return f"{how}. Dice does not depend on t. AP on {', '.join(sources)}.\n" + external


def write_report(runs: list[Path], out: Path, overwrite: bool = False, rule: str = "mean-best",
                 clip_ensemble: bool | None = None, bootstrap: int = 0, seed: int = 0) -> dict[str, Any]:
    """Aggregate runs into ``out``/{report.md, report.csv, report.json, sweep.csv,
    pq_threshold.png, sweep.png}: the Table 1 rows, the per-threshold sweep as CSV, PQ against
    t per variant and the Fig. S1 sweep (PQ, RQ, SQ, AP against t; mean ± std over folds).
    ``clip_ensemble``: rows with (True) / without (False) the CLIP ensemble, or as each run is set (None).
    ``bootstrap`` > 0: also the pooled out-of-fold estimate of each variant whose folds kept their held-out
    predictions, with patient-level CIs, and each against m-odise (:mod:`.pooled`; ``seed``)."""
    import warnings as _w

    from modise.viz.figures import pq_by_variant_figure, sweep_by_variant_figure

    variants, warnings = collect_runs(runs, clip_ensemble)
    with _w.catch_warnings():
        _w.simplefilter("ignore", RuntimeWarning)  # all-NaN columns of undefined PQ
        rows = summarise(variants, rule, warnings)
        curves = sweep_curves(variants, warnings)
    warnings = list(dict.fromkeys(warnings))
    md = "# Results (mean ± std over folds, %; best per column in bold)\n\n" + table_markdown(rows)
    md += "\n" + _protocol_note(rows, rule) + ENSEMBLE_NOTES[clip_ensemble]
    if warnings:
        md += "\n" + "\n".join(f"- {w}" for w in warnings) + "\n"
    pooled = None
    if bootstrap:
        from modise.outputs import check_output_dir

        from .pooled import pooled_and_paired, pooled_markdown

        check_output_dir(out, overwrite, runs)  # before scoring every fold's predictions again
        pooled = pooled_and_paired(variants, bootstrap, seed)
        md += pooled_markdown(pooled)
    with output_dir(out, overwrite, runs) as stage:
        write_bytes_atomic(stage / "report.md", md.encode())
        write_bytes_atomic(stage / "report.csv", table_csv(rows).encode())
        write_bytes_atomic(stage / "sweep.csv", sweep_csv(curves).encode())
        result = {"variants": rows, "clip_ensemble": {None: "as-run", True: "on", False: "off"}[clip_ensemble],
                  "warnings": warnings, **({"pooled": pooled} if pooled is not None else {})}
        write_json_atomic(stage / "report.json", result)
        pq_by_variant_figure(curves["pq"], stage / "pq_threshold.png")
        sweep_by_variant_figure(curves, stage / "sweep.png")
    if warnings:
        from rich.console import Console

        con = Console(stderr=True)
        for w in warnings:
            con.print(f"[yellow]warning:[/] {w}", highlight=False)
    return result
