"""RunCSVLogger: one logs/metrics.csv across --resume, in Lightning's CSV format."""

from __future__ import annotations

import torch

from modise.engine.training.run_logs import RunCSVLogger, read_metrics_csv


def test_resumed_logger_keeps_the_earlier_curve_and_replaces_rows_after_the_checkpoint(tmp_path):
    first = RunCSVLogger(tmp_path, flush_every=2)
    for step in range(4):
        first.log_metrics({"train/loss": torch.tensor(float(step)), "epoch": 0}, step)
    # steps 0-1 flushed at step 1; 2-3 by finalize
    first.finalize("failed")
    header, rows = read_metrics_csv(tmp_path / "logs" / "metrics.csv")
    assert header == ["epoch", "step", "train/loss"] and [r["step"] for r in rows] == ["0", "1", "2", "3"]

    resumed = RunCSVLogger(tmp_path)  # the checkpoint was at step 2: rows 2 and 3 give way
    resumed.log_metrics({"train/loss": 9.0, "epoch": 0, "lr-AdamW": 1e-4}, 2)
    resumed.log_metrics({"train/loss": 8.0, "epoch": 0}, 3)
    resumed.finalize("success")
    header, rows = read_metrics_csv(tmp_path / "logs" / "metrics.csv")
    assert header == ["epoch", "lr-AdamW", "step", "train/loss"]
    assert [(r["step"], r["train/loss"], r["lr-AdamW"]) for r in rows] == [
        ("0", "0.0", ""), ("1", "1.0", ""), ("2", "9.0", "0.0001"), ("3", "8.0", "")]


def test_logger_appends_between_flushes(tmp_path):
    log = RunCSVLogger(tmp_path, flush_every=1)
    for step in range(3):
        log.log_metrics({"train/loss": float(step)}, step)
    log.finalize("success")
    assert [r["step"] for r in read_metrics_csv(log.path)[1]] == ["0", "1", "2"]
    assert log.log_dir == str(tmp_path / "logs") and log.version == "" and log.name == "logs"
