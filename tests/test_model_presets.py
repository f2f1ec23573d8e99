"""The presets folder is the preset list: a seventh preset is one YAML file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from modise.errors import ModiseError
from modise.model import presets

TABLE1 = ("m2f-swinl", "m2f-sd", "odise", "odise-biomedclip", "odise-mame", "m-odise")


def _seventh(folder):
    """The shipped presets plus m-odise-v2: new MAM-E weights, the same BiomedCLIP captioner, placed before m-odise."""
    shutil.copytree(presets.PRESETS_DIR, folder)
    text = (folder / "m-odise.yaml").read_text()
    text = (text.replace("preset: m-odise", "preset: m-odise-v2").replace("model_id: Likalto4/fusion_healthy", "model_id: someone/mame-v2")
            .replace("order: 6 ", "order: 5.5 "))
    assert "someone/mame-v2" in text and "order: 5.5" in text
    (folder / "m-odise-v2.yaml").write_text(text)
    return folder


def test_the_shipped_presets_are_table1_in_the_papers_order():
    from modise.model.config import PRESETS

    assert presets.preset_names() == TABLE1 == PRESETS


def test_a_seventh_preset_is_one_yaml_file(tmp_path, monkeypatch):
    from modise.engine.evaluation.report import table1_order
    from modise.model import build_model, load_preset
    from modise.model.config import PRESETS

    monkeypatch.setattr(presets, "PRESETS_DIR", _seventh(tmp_path / "presets"))
    names = presets.preset_names()
    assert names == (*TABLE1[:5], "m-odise-v2", "m-odise")
    from modise.model import config

    assert config.PRESETS == names and PRESETS == TABLE1  # the name reads the folder on each use
    assert table1_order(["nnunet", "m-odise", "m-odise-v2", "m2f-swinl"]) == ["m2f-swinl", "m-odise-v2", "m-odise", "nnunet"]
    with pytest.raises(ModiseError, match="odise-mame, m-odise-v2, m-odise or pass"):
        load_preset("nope", "tiny")

    cfg = load_preset("m-odise-v2", "full")
    assert cfg.preset == "m-odise-v2" and cfg.diffusion.model_id == "someone/mame-v2"
    model = build_model("m-odise-v2", "tiny")  # the tiny size builds offline
    assert model.config.preset == "m-odise-v2" and sum(p.numel() for p in model.parameters()) > 0

    # the --preset help lists it (the CLI reads the folder when it starts)
    code = ("import sys, pathlib; import modise.model.presets as p; p.PRESETS_DIR = pathlib.Path(sys.argv[1]); "
            "from modise.cli import app; app(['inspect', '--help'], prog_name='modise')")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "presets")], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1"})
    assert res.returncode == 0, res.stderr
    assert "odise-mame, m-odise-v2, m-odise" in res.stdout


def test_an_order_that_is_not_a_number_is_one_sentence(tmp_path, monkeypatch):
    folder = _seventh(tmp_path / "presets")
    path = folder / "m-odise-v2.yaml"
    path.write_text(path.read_text().replace("order: 5.5", "order: last"))
    monkeypatch.setattr(presets, "PRESETS_DIR", folder)
    with pytest.raises(ModiseError, match="m-odise-v2.yaml: order must be a number"):
        presets.preset_names()
