"""``metadata.jsonl``: the records of generated images (a diffusers ImageFolder's captions, MAM-E's data)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def write_metadata_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """One JSON object per line (records of generated images)."""
    from modise.outputs import write_bytes_atomic

    write_bytes_atomic(path, "".join(json.dumps(r) + "\n" for r in records).encode())
