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
