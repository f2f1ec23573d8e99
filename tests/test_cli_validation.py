"""Bad numbers and choices are refused at the CLI edge: one sentence, exit 2, nothing written; --version; help texts complete and without stray " ."."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from modise.cli import app

runner = CliRunner()

BAD = [
    ("prepare", "folder", "--images", "i", "--masks", "m", "--max-size", "-10"),
    ("prepare", "folder", "--images", "i", "--masks", "m", "--folds", "0"),
    ("prepare", "folder", "--images", "i", "--masks", "m", "--min-area", "-5"),
    ("prepare", "synthetic", "--n", "0"),
    ("prepare", "synthetic", "--image-size", "-64"),
    ("prepare", "cdd-cesm", "--root", "r", "--modality", "XX"),
    ("train", "--data", "d", "--max-steps", "-5"),
    ("train", "--data", "d", "--lr", "-1"),
    ("train", "--data", "d", "--lr", "0"),
    ("train", "--data", "d", "--batch-size", "0"),
    ("train", "--data", "d", "--size", "huge"),
    ("cv", "--data", "d", "--folds", "0"),
    ("cv", "--data", "d", "--max-steps", "-5"),
    ("predict", "--checkpoint", "c", "--input", "i", "--score-threshold", "2"),
    ("predict", "--checkpoint", "c", "--input", "i", "--batch-size", "0"),
    ("train", "--data", "d", "--accelerator", "quantum"),
    ("train", "--data", "d", "--precision", "8-bit"),
    ("train", "--data", "d", "--devices", "many"),
    ("train", "--data", "d", "--seed", "-1"),
    ("predict", "--checkpoint", "c", "--input", "i", "--device", "gpu0"),
    ("prepare", "synthetic", "--seed", "-3"),
    ("demo", "--minutes", "-1"),
    ("serve", "--port", "99999"),
    ("serve", "--size", "huge"),
    ("serve", "--max-upload-mb", "0"),
]


@pytest.mark.parametrize("args", BAD, ids=lambda a: " ".join(a))
def test_bad_option_is_one_sentence_exit_2_and_writes_nothing(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, [*args, *([] if args[0] == "serve" else ["--out", "out"])])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert re.search(r"Invalid value for '--[a-z-]+'", res.output), res.output
    assert list(tmp_path.iterdir()) == []


def test_version():
    from modise import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"modise {__version__}"


@pytest.mark.parametrize("command", [("train",), ("cv",), ("predict",), ("demo",), ("serve",), ("prepare", "folder"),
                                     ("prepare", "synthetic")])
def test_every_option_has_help_and_no_stray_dot(command):
    import click
    import typer.main

    cmd = typer.main.get_command(app)
    for name in command:
        cmd = cmd.commands[name]
    missing = [p.name for p in cmd.params if isinstance(p, click.Option) and not p.help and p.name != "help"]
    assert not missing, f"{' '.join(command)}: options without help: {missing}"
    text = runner.invoke(app, [*command, "--help"]).output
    assert not re.search(r"\s\.(\s|$)", text), text
