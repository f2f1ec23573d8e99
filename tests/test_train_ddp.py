"""The distributed path on CPU: 2 gloo processes. The mask count of the loss is all-reduced,
and ``modise train --strategy ddp --devices 2`` trains and writes one run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

model_mod = pytest.importorskip("modise.model")
if not hasattr(model_mod, "build_model"):
    pytest.skip("model part not available yet", allow_module_level=True)


def _mask_count_worker(rank: int, world: int, port: int, result_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from modise.model.config import LossConfig
        from modise.model.criterion import SetCriterion

        torch.manual_seed(rank)
        crit = SetCriterion(num_classes=2, cfg=LossConfig(num_points=256))  # the model's own loss
        counters = [m for m in crit.modules() if hasattr(m, "get_num_masks")]
        assert counters, "the model's loss has no mask counter"
        # rank 0 sees 1 lesion, rank 1 sees 3: every rank must normalise by the global mean, 2
        labels = [torch.zeros(1 + 2 * rank, dtype=torch.long)]
        n = float(counters[0].get_num_masks(labels, torch.device("cpu")))
        # and the full loss (matching, all-reduce inside) runs under the process group
        masks = torch.zeros(1 + 2 * rank, 32, 32)
        masks[:, 4:12, 4:12] = 1
        outputs = {"pred_logits": torch.randn(1, 5, 3), "pred_masks": torch.randn(1, 5, 8, 8), "aux_outputs": []}
        loss = crit(outputs, [{"labels": labels[0], "masks": masks}])["loss"]
        Path(result_dir, f"rank{rank}.json").write_text(json.dumps({"num_masks": n, "loss": float(loss)}))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mask_count_is_all_reduced(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_mask_count_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    res = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["num_masks"] for r in res] == [2.0, 2.0]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in res)


def test_cli_ddp_two_cpu_processes(tmp_path):
    from modise.data.phantoms import prepare_synthetic

    data = tmp_path / "data"
    prepare_synthetic(data, n=10, seed=1, size=128, k=5, quiet=True)
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "modise", "train", "--preset", "m-odise", "--size", "tiny", "--random-weights",
           "--data", str(data), "--fold", "0", "--out", str(run), "--accelerator", "cpu", "--devices", "2",
           "--strategy", "ddp", "--max-steps", "2", "--batch-size", "1", "--image-size", "128", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["global_step"] == 2
    ck = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ck["global_step"] == 2
    # rank 0 printed the metrics exactly once: stdout is one JSON document (two would not parse)
    assert json.loads(p.stdout)["train"]["global_step"] == 2
