"""``modise predict --devices N [--num-nodes M]``: one process per device (Lightning Fabric's DDP
launcher; torchrun or SLURM across nodes), each predicting the share of the inputs Lightning's
``UnrepeatedDistributedSampler`` gives its rank (what ``Trainer.predict`` uses: no image twice) and
writing its images and records; rank 0 then merges the records into one ``panoptic.json`` /
``instances.json`` and ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modise.errors import ModiseError


def predict_distributed(checkpoint: str | Path, inputs: Sequence[str | Path] | None, out: str | Path, *, devices: int,
                        num_nodes: int = 1, device: str | None = None, **kw: Any) -> dict[str, Any] | None:
    """:func:`~modise.engine.prediction.predict.predict_files` on ``devices`` x ``num_nodes`` processes
    (GPUs when ``device`` is not cpu and CUDA is there, else CPU processes talking gloo); returns the summary
    on global rank 0, ``None`` in the processes of other nodes."""
    import torch
    from lightning.fabric import Fabric

    from modise.outputs import check_output_dir

    sources = [checkpoint, *(inputs or [])]
    if not kw.get("resume"):
        check_output_dir(out, kw.get("overwrite", False), sources, hint="pass --overwrite to replace it or --resume to continue it")
    cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if devices > 1 and not cuda and device not in (None, "cpu"):
        raise ModiseError(f"--devices {devices} runs on GPUs or CPU processes, not on '{device}'.")
    # one node: spawn the processes here; several: each node's processes were started by torchrun / SLURM
    strategy = "ddp_spawn" if num_nodes == 1 else "ddp"
    fabric = Fabric(accelerator="cuda" if cuda else "cpu", devices=devices, num_nodes=num_nodes, strategy=strategy)
    return fabric.launch(_rank_main, checkpoint, inputs, out, kw)


def _rank_main(fabric: Any, checkpoint: Any, inputs: Any, out: Any, kw: dict[str, Any]) -> dict[str, Any] | None:
    import torch.distributed as dist
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    from .inputs import collect_inputs
    from .predict import predict_files, prepare_out

    items = collect_inputs(inputs, kw.get("data"), kw.get("fold"))
    if fabric.global_rank == 0:
        prepare_out(out, kw.get("overwrite", False), kw.get("resume", False), [checkpoint, *(inputs or [])])
    fabric.barrier()
    share = list(UnrepeatedDistributedSampler(range(len(items)), num_replicas=fabric.world_size, rank=fabric.global_rank,
                                              shuffle=False))
    part = predict_files(checkpoint, inputs, out, device=str(fabric.device), shard=[items[i] for i in share], progress=False, **kw)
    parts: list[Any] = [None] * fabric.world_size
    dist.all_gather_object(parts, part)
    # every rank leaves the process group together: a process that exits while another still holds
    # gloo's connections can abort in its C++ threads ("terminate called without an active exception")
    dist.barrier()
    dist.destroy_process_group()
    if fabric.global_rank != 0:
        return None
    from modise.pipeline import ModisePipeline

    from .predict import finish_predictions, prediction_info

    pipe = ModisePipeline.from_pretrained(checkpoint, device="cpu", object_mask_threshold=kw.get("object_mask_threshold"))
    counts = {k: sum(p[k] for p in parts) for k in ("done", "skipped", "failed")}
    errors = [e for p in parts for e in p["errors"]]
    order = {str(it.path): i for i, it in enumerate(items)}
    errors.sort(key=lambda e: order.get(e["input"], len(order)))
    return finish_predictions(Path(out), items, pipe.categories, prediction_info(checkpoint, pipe), counts, errors)
