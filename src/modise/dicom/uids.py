"""Derived, idempotent UIDs and the model fingerprint they come from (DESIGN.md 4b).

A re-run of the same model with the same inference settings on the same source image must give the
same SEG/SR SOP Instance and Series UIDs, so that a PACS stores nothing twice; another model or other
settings must give new ones. UIDs are ``2.25.`` + the integer of a UUID (PS3.5 B.2, ITU-T X.667) made
from a SHA-256 of the parts, with the RFC 9562 version-8 (custom hash) and variant bits set.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

# The files of a model folder that make the model (config.yaml: architecture, frozen parts' ids,
# random-weight seed, inference defaults; categories.json: classes and their codes; the weights).
MODEL_FILES = ("config.yaml", "categories.json", "model.safetensors")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def derived_uid(*parts: Any) -> str:
    """``2.25.<int>``: a UID that depends only on ``parts`` (str()-ed; order matters), at most 44 chars."""
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()
    n = int.from_bytes(digest[:16], "big")
    n = (n & ~(0xF << 76)) | (0x8 << 76)  # version 8 (RFC 9562 5.8: custom, here SHA-256 based)
    n = (n & ~(0x3 << 62)) | (0x2 << 62)  # variant 10x (RFC 9562 4.1)
    return f"2.25.{uuid.UUID(int=n).int}"


def model_fingerprint(model: Any, settings_record: dict[str, Any]) -> str:
    """SHA-256 (hex) of the model and the inference settings that shape its results.

    ``model``: a run folder or model folder (its files, :data:`MODEL_FILES`, hashed by streaming; the
    frozen parts it loads by id hashed by :func:`frozen_weights_identity`), or a loaded
    :class:`~modise.pipeline.ModisePipeline` (config, categories and trainable tensors, for a model
    that has no folder, e.g. the web app's random-weights model). ``settings_record``: the
    ``InferenceConfig.record()`` the images are predicted with. Computed once per predict."""
    h = hashlib.sha256()
    if isinstance(model, (str, Path)):
        h.update(_folder_digest(*_folder_key(Path(model))).encode())
    else:
        h.update(_pipeline_digest(model).encode())
    h.update(json.dumps(settings_record, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _folder_key(path: Path) -> tuple[str, tuple[tuple[str, int, int], ...]]:
    """The model folder and (name, size, mtime_ns) of its files: the cache key of :func:`_folder_digest`."""
    from modise.runs import model_dir

    folder = model_dir(path).resolve()
    stats = tuple((n, (folder / n).stat().st_size, (folder / n).stat().st_mtime_ns) for n in MODEL_FILES
                  if (folder / n).is_file())
    return str(folder), stats


@lru_cache(maxsize=8)  # the web app asks once per click; a changed file changes the key
def _folder_digest(folder: str, stats: tuple[tuple[str, int, int], ...]) -> str:
    import yaml

    h = hashlib.sha256()
    for name, _, _ in stats:
        with open(Path(folder) / name, "rb") as f:
            h.update(name.encode() + b"\0" + hashlib.file_digest(f, "sha256").digest())
    config = Path(folder) / "config.yaml"
    if config.is_file():
        h.update(frozen_weights_identity(yaml.safe_load(config.read_text()) or {}).encode())
    return h.hexdigest()


def frozen_weights_identity(config: dict[str, Any]) -> str:
    """The identity of the frozen weights a model config loads by id (``*model_id`` keys).

    Hub ids: the file names of the weights in the local hub cache, which are the SHA-256 of their
    content (git-LFS blobs), so GB-size weights cost a directory listing. Local folders: their weight
    files hashed by streaming. Random weights: nothing is loaded (the seed is in ``config.yaml``)."""
    if config.get("random_weights"):
        return "random"
    h = hashlib.sha256()
    for model_id in sorted(set(_model_ids(config))):
        h.update(model_id.encode() + b"\0")
        local = Path(model_id)
        if local.is_dir():
            for f in sorted(p for p in local.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file()):
                with open(f, "rb") as fh:
                    h.update(str(f.relative_to(local)).encode() + hashlib.file_digest(fh, "sha256").digest())
        else:
            h.update(_hub_blobs(model_id.removeprefix("hf-hub:")).encode())
    return h.hexdigest()


def _model_ids(config: Any) -> list[str]:
    if isinstance(config, dict):
        out = [v for k, v in config.items() if k.endswith("model_id") and isinstance(v, str) and v]
        return out + [i for v in config.values() for i in _model_ids(v)]
    return []


def _hub_blobs(repo_id: str) -> str:
    """Sorted ``path=blob`` of a cached hub snapshot's weight files ('' when not cached: the id alone)."""
    try:
        from huggingface_hub import snapshot_download

        snap = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001  not cached / not a hub id: the id (already hashed) is all we know
        return ""
    return ";".join(f"{p.relative_to(snap)}={p.resolve().name}" for p in sorted(snap.rglob("*"))
                    if p.suffix in WEIGHT_SUFFIXES)


def _pipeline_digest(pipe: Any) -> str:
    import torch

    model = pipe.model
    h = hashlib.sha256(json.dumps(model.config.model_dump(), sort_keys=True, default=str).encode())
    h.update(json.dumps([c.to_json() for c in model.categories], sort_keys=True).encode())
    h.update(frozen_weights_identity(model.config.model_dump()).encode())
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}  # no copies
    for name, tensor in sorted(trainable.items()):
        raw = tensor.detach().cpu().contiguous().flatten().view(torch.uint8)  # any dtype (bf16 too) as bytes
        h.update(name.encode() + raw.numpy().tobytes())
    return h.hexdigest()
