"""Patient-level bootstrap: 95 % percentile intervals of every metric, and the paired test.

A replicate draws as many patients as the set has, with replacement; each image of a patient
drawn k times weighs k (a patient's images always go together). Metrics of a replicate come from
the per-image sufficient statistics (:class:`.stats.SetStats`), never from re-matching.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .froc import FROC_GRID
from .stats import SetStats

DEFAULT_REPLICATES = 1000
CI_LEVEL = 0.95
NO_PATIENT_NOTE = "the ground truth has no patient_id for {n} image(s); each of those is its own patient"
PAIRED_METHOD = ("paired patient-level bootstrap: the same resampled patients score A and B; 95 % percentile CI of A - B; "
                 "two-sided p = min(1, 2 (min(#{{d* <= 0}}, #{{d* >= 0}}) + 1) / (B + 1)) over B = {n} replicates")


def patient_index(image_ids: Sequence[Any], patients: dict[Any, Any] | None) -> tuple[np.ndarray, int, str | None]:
    """Image -> patient index (N,), the number of patients, and a note when some image has no patient id."""
    patients = patients or {}
    keys, missing = [], 0
    for i in image_ids:
        p = patients.get(i)
        if p is None or p == "":
            missing += 1
            keys.append(("image", i))
        else:
            keys.append(("patient", str(p)))
    index: dict[Any, int] = {}
    idx = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)
    return idx, len(index), NO_PATIENT_NOTE.format(n=missing) if missing else None


def replicate_weights(patient_idx: np.ndarray, n_rep: int, seed: int) -> Iterator[np.ndarray]:
    """``n_rep`` image-weight vectors (N,): each patient's draw count, given to all its images."""
    rng = np.random.default_rng(seed)
    n_pat = int(patient_idx.max()) + 1 if patient_idx.size else 0
    for _ in range(n_rep):
        counts = np.bincount(rng.integers(0, n_pat, n_pat), minlength=n_pat) if n_pat else np.zeros(0, np.int64)
        yield counts[patient_idx].astype(np.float64)


def count_replicates(fns: Sequence[Callable[[np.ndarray], dict[str, np.ndarray]]], patient_idx: np.ndarray, n_rep: int,
                     seed: int, chunk: int = 100) -> list[dict[str, np.ndarray]]:
    """Per ``fn``, metric name -> (B,) values over the same ``n_rep`` resamples as :func:`replicates` (same
    ``seed``), each ``fn`` taking a (b, N) matrix of weightings, ``chunk`` replicates at a time (metrics that
    are sums of per-image counts: one matrix product for all replicates)."""
    out: list[dict[str, list]] = [{} for _ in fns]
    rows = list(replicate_weights(patient_idx, n_rep, seed))
    for start in range(0, len(rows), chunk):
        weights = np.stack(rows[start:start + chunk])
        for fn, acc in zip(fns, out):
            for key, v in fn(weights).items():
                acc.setdefault(key, []).append(v)
    return [{k: np.concatenate(v) for k, v in acc.items()} for acc in out]


def _value(key: str, v: Any) -> float | np.ndarray:
    if key.startswith("froc:"):  # a sensitivity per FROC_GRID point
        return np.full(FROC_GRID.size, np.nan) if v is None else np.asarray(v, dtype=np.float64)
    return np.nan if v is None else float(v)


def replicates(stats: Sequence[SetStats], patient_idx: np.ndarray, n_rep: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Per set (all on the same images in the same order), metric name -> (B,) or (B, K) values over the
    same ``n_rep`` patient resamples (NaN where a replicate leaves the metric undefined)."""
    out: list[dict[str, list]] = [{} for _ in stats]
    for w in replicate_weights(patient_idx, n_rep, seed):
        for s, acc in zip(stats, out):
            for key, v in s.metrics(w).items():
                acc.setdefault(key, []).append(_value(key, v))
    return [{k: np.array(v) for k, v in acc.items()} for acc in out]


def percentile_ci(values: np.ndarray, level: float = CI_LEVEL) -> list[float | None] | list[list[float | None]]:
    """Percentile interval over replicates (axis 0), NaNs left out; None where no replicate is defined."""
    values = np.asarray(values, dtype=np.float64)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    if values.ndim == 1:
        ok = values[~np.isnan(values)]
        return [float(x) for x in np.percentile(ok, q)] if ok.size else [None, None]
    return [percentile_ci(values[:, j], level) for j in range(values.shape[1])]


def paired_p(diffs: np.ndarray) -> float | None:
    """Two-sided bootstrap p-value of A - B = 0 from replicate differences (NaNs left out)."""
    d = diffs[~np.isnan(diffs)]
    if d.size == 0:
        return None
    tail = min(int((d <= 0).sum()), int((d >= 0).sum()))
    return float(min(1.0, 2.0 * (tail + 1) / (d.size + 1)))
