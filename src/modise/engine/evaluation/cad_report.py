"""metrics.md's CAD tables (CIs, FROC, breakdowns) and froc.csv, from metrics.json's dict."""

from __future__ import annotations

import csv
import io
from typing import Any

from .cad import LABELS, SCALARS


def _f(v: Any, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _ci(ci: Any, digits: int = 1) -> str:
    return "" if not ci or ci[0] is None else f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _v(row: dict[str, Any], key: str) -> str:
    """A breakdown row's value (%) with its CI when it has one."""
    return _f(row.get(key)) + _ci((row.get("ci") or {}).get(key))


def froc_csv(metrics: dict[str, Any]) -> str:
    """class, fps, sensitivity, ci_lo, ci_hi: each FROC curve on its log-spaced grid (1/8 .. 8 FP/image)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["class", "fps", "sensitivity", "ci_lo", "ci_hi"])
    for name, f in (metrics.get("froc") or {}).items():
        curve = f["curve"]
        if curve["sensitivity"] is None:
            continue
        ci = curve.get("ci") or [[None, None]] * len(curve["fps"])
        for x, y, (lo, hi) in zip(curve["fps"], curve["sensitivity"], ci):
            w.writerow([name, f"{x:.6g}", f"{y:.6f}", "" if lo is None else f"{lo:.6f}", "" if hi is None else f"{hi:.6f}"])
    return buf.getvalue()


def cad_markdown(metrics: dict[str, Any]) -> str:
    """The CI line, the FROC table and the breakdown tables."""
    out = []
    boot = metrics.get("bootstrap") or {}
    if metrics.get("ci"):
        ci = metrics["ci"]
        b = metrics["best"]
        vals = {"pq": b["pq"], "rq": b["rq"], "sq": b["sq"], "ap": b["ap"], "dice": metrics["dice"]}
        out.append(f"\n## 95 % confidence intervals (patient-level bootstrap, {boot['replicates']} replicates, seed {boot['seed']}, "
                   f"{boot['patients']} patients)\n\n| metric | value | 95 % CI |\n|---|---|---|\n"
                   + "".join(f"| {LABELS[k]} | {_f(vals[k])} |{_ci(ci[k])} |\n" for k in SCALARS))
        if boot.get("note"):
            out.append(f"\nNote: {boot['note']}.\n")
    froc = metrics.get("froc")
    if froc:
        p = metrics["froc_protocol"]
        hit = f"mask IoU >= {p['iou']}" if p["hit"] == "iou" else "detection centroid inside the lesion"
        fps = next(iter(froc.values()))["fps"]
        out.append(f"\n## FROC (hit: {hit}; detections: {p['detections']}; sensitivity at mean FPs per image)\n\n"
                   "| class | lesions | " + " | ".join(f"{x:g}" for x in fps) + " | CPM | 95 % CI |\n"
                   + "|---" * (len(fps) + 4) + "|\n")
        for name, f in froc.items():
            sens = f["sensitivity"] or [None] * len(fps)
            out.append(f"| {name} | {f['lesions']} | " + " | ".join(_f(s, 3) for s in sens) + f" | {_f(f['cpm'], 3)} |{_ci(f.get('ci'), 3)} |\n")
    by = metrics.get("by") or {}
    t = metrics["best"]["threshold"]
    ci_note = " PQ, RQ, SQ and Dice with their 95 % CI (AP and CPM without)." if boot.get("replicates") else ""
    size = by.get("lesion_size")
    if size:
        names = list(next(iter(size["bins"].values()))["cpm"]) if size["bins"] else []
        out.append(f"\n## By lesion size ({size['how']}; at t = {t:.2f}: PQ family, a TP or FN in its GT segment's size, a FP "
                   "in its own; AP, COCOeval with the bin as area range; Dice, the bin's lesion pixels; FROC, TPs on lesions "
                   f"of that size, every FP).{ci_note}\n\n"
                   "| size | lesions | RQ | SQ | PQ | AP | Dice | " + " | ".join(f"CPM {n}" for n in names) + " |\n"
                   + "|---" * (len(names) + 7) + "|\n")
        for b, row in size["bins"].items():
            out.append(f"| {b} | {row['lesions']} | {_v(row, 'rq')} | {_v(row, 'sq')} | {_v(row, 'pq')} | {_v(row, 'ap')} | "
                       f"{_v(row, 'dice')} | " + " | ".join(_f(row["cpm"][n], 3) for n in names) + " |\n")
    for key, groups in by.items():
        if key == "lesion_size":
            continue
        out.append(f"\n## By {key.replace('_', ' ')} (at t = {t:.2f}).{ci_note}\n\n"
                   "| value | images | RQ | SQ | PQ | AP | Dice | CPM (all) |\n|---|---|---|---|---|---|---|---|\n")
        for v, row in groups.items():
            cpm = (row.get("cpm") or {}).get("all")
            out.append(f"| {v} | {row['images']} | {_v(row, 'rq')} | {_v(row, 'sq')} | {_v(row, 'pq')} | {_v(row, 'ap')} | "
                       f"{_v(row, 'dice')} | {_f(cpm, 3)} |\n")
    return "".join(out)
