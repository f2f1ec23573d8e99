"""``modise inspect`` / ``modise benchmark`` on tiny models (JSON contract)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from modise.cli import app


def test_inspect_json_counts_parameters():
    r = CliRunner().invoke(app, ["inspect", "--preset", "m-odise", "--size", "tiny", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    p = rep["parameters"]
    assert p["total"] == p["trainable"] + p["frozen"] and p["trainable"] > 0 and p["frozen"] > p["trainable"]
    assert [m["stride"] for m in rep["feature_maps"]] == [4, 8, 16, 32]
    assert len(rep["taps"]) == 8 and rep["taps"][0]["module"] == "vae.encoder.down_blocks.2.resnets.1"
    assert rep["inference"]["image_size"] == 128 and rep["inference"]["max_size"] == 320  # the sizes used, never None
    r = CliRunner().invoke(app, ["inspect", "--preset", "m-odise", "--size", "tiny"])
    assert "image_size 128" in r.stdout and "None" not in r.stdout, r.stdout


def test_benchmark_json_keys():
    r = CliRunner().invoke(app, ["benchmark", "--preset", "m2f-sd", "--size", "tiny", "--image-size", "128", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout[r.stdout.index("{"):])
    for k in ("seconds_per_image", "diffusion_seconds_per_image", "overhead_ratio", "peak_rss_mb"):
        assert res[k] > 0


def test_unknown_preset_is_a_clean_error():
    r = CliRunner().invoke(app, ["inspect", "--preset", "nope"])
    assert r.exit_code != 0 and "Unknown preset 'nope'" in str(r.exception)
