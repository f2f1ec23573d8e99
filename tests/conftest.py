"""Shared fixtures. Tests never download: the hub is switched off before anything imports it."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")



def _cap_threads() -> None:
    """One pytest-xdist worker gets its share of the cores, not all of them.

    With ``pytest -n N`` every worker would otherwise start a thread per core in torch/OpenMP
    (N x cores threads: on a 16-core machine tests timed out). An explicit OMP_NUM_THREADS wins.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers <= 1:
        return
    per_worker = str(max(1, (os.cpu_count() or 1) // workers))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, per_worker)  # before torch is imported, and for subprocesses
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


_cap_threads()

import pytest  # noqa: E402
from orthanc_server import orthanc  # noqa: E402,F401  the real Orthanc of the DICOMweb tests (session fixture)

REPO = Path(__file__).resolve().parents[1]
# ten real CDD-CESM mammograms with radiologist masks, shipped in the package (CC BY 4.0, see README there)
SAMPLE_DIR = REPO / "src" / "modise" / "assets" / "samples"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The ten real CDD-CESM images with radiologist masks (``images/``, ``masks/``)."""
    assert SAMPLE_DIR.is_dir(), f"sample mammograms missing from the repository: {SAMPLE_DIR}"
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def sample_images(sample_dir: Path) -> list[Path]:
    return sorted((sample_dir / "images").glob("*.jpg"))
