"""Shared fixtures. Tests never download: the hub is switched off before anything imports it."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO.parent / "shared" / "data" / "cdd_cesm_sample"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The ten real CDD-CESM images with radiologist masks (../shared/data)."""
    if not SAMPLE_DIR.is_dir():
        pytest.skip(f"sample mammograms not found at {SAMPLE_DIR}")
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def sample_images(sample_dir: Path) -> list[Path]:
    return sorted((sample_dir / "images").glob("*.jpg"))
