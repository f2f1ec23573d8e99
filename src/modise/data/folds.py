"""Patient-level, label-stratified K folds: every image in exactly one fold, a patient never split."""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def patient_folds(
    image_patient: dict[int, str], image_labels: dict[int, set[int]], k: int = 5, seed: int = 0
) -> list[list[int]]:
    """Assign images to ``min(k, #patients)`` folds.

    A patient's stratum is the highest category id among its images (0: no lesion), so
    malignant-bearing patients spread evenly across folds. Within a stratum, patients
    (shuffled by ``seed``) go to the fold with the fewest images of that stratum, ties
    broken by total size.
    """
    patients: dict[str, list[int]] = defaultdict(list)
    for image_id, pid in image_patient.items():
        patients[str(pid)].append(int(image_id))
    if not patients:
        return []
    k = max(1, min(int(k), len(patients)))
    strata: dict[int, list[str]] = defaultdict(list)
    for pid, ids in patients.items():
        labels = set().union(*(image_labels.get(i, set()) for i in ids))
        strata[max(labels, default=0)].append(pid)
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for stratum in sorted(strata, reverse=True):
        pids = sorted(strata[stratum])
        rng.shuffle(pids)
        in_stratum = [0] * k
        for pid in pids:
            f = min(range(k), key=lambda j: (in_stratum[j], len(folds[j]), j))
            folds[f].extend(patients[pid])
            in_stratum[f] += len(patients[pid])
    return [sorted(f) for f in folds]
