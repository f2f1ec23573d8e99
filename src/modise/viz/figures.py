"""Figures, one function per kind: the threshold sweep of one evaluation (the paper's Fig. S1;
``modise evaluate`` and the demo) and PQ against the threshold per variant (mean ± std over
folds) for reports."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _nan(v: list) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in v], dtype=float)


def threshold_sweep_figure(metrics: Mapping[str, Any], path: Path, title: str | None = None) -> None:
    """PQ, RQ and SQ (%) against the IoU threshold, best threshold marked; ``metrics`` as
    ``PanopticEvaluator.compute`` returns them (metrics.json)."""
    plt = _plt()
    t = np.asarray(metrics["thresholds"])
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for key, style in (("pq", "-o"), ("rq", "--s"), ("sq", ":^")):
        ax.plot(t, _nan(metrics[key]), style, ms=3.5, label=key.upper())
    best = metrics["best"]["threshold"]
    ax.axvline(best, color="grey", lw=0.8, ls="--")
    ax.annotate(f"best t={best:.2f}", (best, 0.02), xycoords=("data", "axes fraction"), fontsize=8, ha="left", color="grey")
    ax.set_xlabel("IoU threshold t")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _variant_panel(ax, curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], ylabel: str) -> None:
    for name, (t, mean, std) in curves.items():
        (line,) = ax.plot(t, mean, "-o", ms=3, label=name)
        ax.fill_between(t, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("IoU threshold t")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)


def pq_by_variant_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: Path) -> None:
    """``curves``: variant -> (thresholds, mean PQ, std PQ); mean line with a ±std band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    _variant_panel(ax, curves, "PQ (%)")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def sweep_by_variant_figure(curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]], path: Path) -> None:
    """The Fig. S1 sweep over variants: one panel per metric (PQ, RQ, SQ, AP present in
    ``curves``: metric -> variant -> (thresholds, mean, std)), mean over folds with a ±std
    band, the row's threshold (best mean PQ) marked per variant."""
    plt = _plt()
    keys = [k for k in ("pq", "rq", "sq", "ap") if curves.get(k)] or ["pq"]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.6), dpi=120, squeeze=False)
    for ax, key in zip(axes[0], keys):
        _variant_panel(ax, curves.get(key, {}), f"{key.upper()} (%)")
        ax.set_title(key.upper(), fontsize=10)
        for name, (t, mean, _) in curves.get("pq", {}).items():
            if key == "pq" and not np.all(np.isnan(mean)):
                ax.axvline(t[int(np.nanargmax(mean))], color="grey", lw=0.6, ls=":")
    axes[0][0].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def froc_figure(froc: Mapping[str, Any], path: Path, title: str | None = None) -> None:
    """FROC curves (metrics.json's ``froc``): sensitivity against mean FPs per image on a log axis, one
    curve per lesion class and the all-lesion curve (bold) with its bootstrap CI band when there is one."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for name, f in froc.items():
        curve = f.get("curve") or {}
        if curve.get("sensitivity") is None:
            continue
        x, y = np.asarray(curve["fps"]), np.asarray(curve["sensitivity"])
        bold = name == "all"
        (line,) = ax.plot(x, y, "-", lw=2.2 if bold else 1.2, color="black" if bold else None,
                          label=f"{name} (CPM {f['cpm']:.3f}, n={f.get('lesions', '?')})")
        ci = curve.get("ci")
        if ci and bold:
            lo = np.array([np.nan if c[0] is None else c[0] for c in ci], dtype=float)
            hi = np.array([np.nan if c[1] is None else c[1] for c in ci], dtype=float)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, lw=0, label="all: 95 % CI (patients)")
        pts = np.asarray(f["fps"])
        ax.plot(pts, np.asarray(f["sensitivity"]), "o", ms=3, color=line.get_color())
    ax.set_xscale("log", base=2)
    ax.set_xticks([0.125, 0.25, 0.5, 1, 2, 4, 8], ["1/8", "1/4", "1/2", "1", "2", "4", "8"])
    ax.set_xlabel("mean false positives per image")
    ax.set_ylabel("lesion sensitivity")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(frameon=False, fontsize=7, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
