"""Every command speaks one vocabulary (docs/reference/cli/index.md, the conventions table): one name per concept with the old
spellings as hidden aliases that still parse, choices listed, defaults in one style, --threads on every
command, whole command summaries and one wording per kind of bad value."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from modise.cli import app

runner = CliRunner()
ROOT = typer.main.get_command(app)


def _leaves(group, path=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _leaves(cmd, (*path, name))
        else:
            yield (*path, name), cmd


COMMANDS = dict(_leaves(ROOT))
GROUPS = {(): ROOT, **{(n,): c for n, c in ROOT.commands.items() if hasattr(c, "commands")}}


def _options(cmd):
    return [p for p in cmd.params if p.param_type_name == "option" and p.name != "help"]


def _name(param) -> str:
    return next(o for o in param.opts if o.startswith("--"))


# old spelling -> the name it stands for now
OLD_NAMES = {
    "--checkpoint": "--run", "--base": "--model", "--resolution": "--image-size", "--max-size": "--max-image-size",
    "--crop": "--crop-size", "--accelerator": "--device", "--num-workers": "--workers", "--val-steps": "--val-sampling-steps",
    "--accumulate": "--grad-accum", "--clip": "--grad-clip", "--ckpt-every": "--checkpoint-every",
    "--steps": ("--sampling-steps", "--max-steps"),  # denoising steps in generate/inpaint/augment, training steps in demo
}
# evaluate's first names, kept as aliases (--root and --input are other options' names elsewhere)
LOCAL_ALIASES = {"--gt": "--root", "--pred": "--input"}
# options whose values are free text (everything else with a value shows its type or its choices)
FREE_TEXT = {"--thresholds", "--prompt", "--sweep-values", "--host", "--patient-regex"}
# one declaration, the same help everywhere
SHARED = ("--overwrite", "--size", "--random-weights", "--threads", "--preset", "--max-image-size", "--sampling-steps",
          "--num-nodes", "--devices", "--strategy", "--override")


def test_old_spellings_are_hidden_aliases_of_one_name():
    for path, cmd in COMMANDS.items():
        for p in _options(cmd):
            longs = [o for o in p.opts if o.startswith("--")]
            assert longs[0] not in OLD_NAMES, f"{' '.join(path)}: {longs[0]} is an old spelling of {OLD_NAMES[longs[0]]}"
            for old in longs[1:]:
                new = OLD_NAMES.get(old, ())
                if LOCAL_ALIASES.get(longs[0]) == old:
                    continue
                assert longs[0] in (new if isinstance(new, tuple) else (new,)), f"{' '.join(path)}: {longs} mixes concepts"
        text = runner.invoke(app, [*path, "--help"], terminal_width=200).output
        shown = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))
        for old in OLD_NAMES:
            if any(old in p.opts[1:] for p in _options(cmd)):
                assert old not in shown or any(_name(p) == old for p in _options(cmd)), f"{' '.join(path)} lists {old}"


OLD_SPELLINGS = [
    (("predict",), ["--checkpoint", "r", "--out", "o"], "checkpoint", Path("r")),
    (("serve",), ["--checkpoint", "r"], "run", [Path("r")]),
    (("train",), ["--data", "d", "--out", "o", "--accelerator", "cpu", "--num-workers", "2", "--fold", "-1"],
     ("accelerator", "num_workers", "fold"), ("cpu", 2, -1)),
    (("demo",), ["--steps", "5"], "steps", 5),
    (("generate",), ["--steps", "3", "--resolution", "64"], ("steps", "resolution"), (3, 64)),
    (("inpaint",), ["--image", "x", "--auto-box", "--out", "o", "--crop", "64", "--steps", "2"], ("crop", "steps"), (64, 2)),
    (("augment",), ["--healthy", "h", "--n", "1", "--out", "o", "--crop", "64", "--steps", "2"], ("crop", "steps"), (64, 2)),
    (("prepare", "folder"), ["--images", "i", "--masks", "m", "--out", "o", "--max-size", "64"], "max_size", 64),
    (("evaluate",), ["--root", "g", "--input", "p", "--out", "o", "--num-workers", "2"], ("gt", "pred", "workers"),
     (Path("g"), Path("p"), 2)),
    (("mame", "prepare"), ["--root", "r", "--out", "o", "--resolution", "64"], "frame", 64),
    (("mame", "train"), ["--data", "d", "--out", "o", "--base", "b", "--resolution", "64", "--val-steps", "3",
                         "--num-workers", "1", "--accelerator", "cpu", "--ckpt-every", "7"],
     ("base", "resolution", "val_steps", "num_workers", "accelerator", "checkpoint_every"), ("b", 64, 3, 1, "cpu", 7)),
    (("benchmark",), ["--precision", "bf16", "--device", "gpu"], ("precision", "device"), ("bf16-mixed", "cuda")),
    (("train",), ["--data", "d", "--out", "o", "--precision", "fp32", "--fold", "all"], ("precision", "fold"), ("32-true", -1)),
]


@pytest.mark.parametrize("path,args,names,values", OLD_SPELLINGS, ids=lambda v: " ".join(v) if isinstance(v, tuple) and
                         all(isinstance(x, str) for x in v) else None)
def test_old_spellings_and_values_still_parse(path, args, names, values):
    ctx = COMMANDS[path].make_context(" ".join(path), list(args))
    names, values = (names, values) if isinstance(names, tuple) else ((names,), (values,))
    for name, value in zip(names, values):
        got = ctx.params[name]
        assert getattr(got, "value", got) == value, (name, got)


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_default_passes_its_own_parser(path):
    # only the required options given: every other value is its default, run through its parser
    cmd = COMMANDS[path]
    args = [a for p in _options(cmd) if p.required for a in (_name(p), "1")]
    args += ["x" for p in cmd.params if p.param_type_name == "argument"]
    cmd.make_context(" ".join(path), args)


def test_every_command_takes_threads_before_or_after_its_name():
    for path, cmd in COMMANDS.items():
        assert any("--threads" in p.opts for p in cmd.params), f"{' '.join(path)} has no --threads"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MODISE_THREADS")}
    code = ("import sys\nfrom modise.cli import app\nsys.argv[1:] = ['version', '--threads', '1']\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\nimport torch\nprint(torch.get_num_threads())")
    run = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": os.pathsep.join(sys.path)},
                         capture_output=True, text=True, check=True)
    assert run.stdout.split()[-1] == "1", run


def test_choices_are_listed_and_values_typed():
    for path, cmd in COMMANDS.items():
        ctx = cmd.make_context(" ".join(path), [], resilient_parsing=True)
        for p in _options(cmd):
            if p.is_flag or _name(p) in FREE_TEXT:
                continue
            shown = p.get_help_record(ctx)[0]
            assert not re.search(r"<(str|list\[str\])>", shown), f"{' '.join(path)}: {shown} hides its choices or form"


def test_defaults_have_one_style():
    for path, cmd in COMMANDS.items():
        for p in _options(cmd):
            assert not re.search(r"default|\[\d", p.help or "", re.I), f"{' '.join(path)} {_name(p)}: {p.help!r}"


def test_shared_options_have_one_help_and_one_form():
    seen: dict[str, tuple] = {}
    for path, cmd in COMMANDS.items():
        ctx = cmd.make_context(" ".join(path), [], resilient_parsing=True)
        for p in _options(cmd):
            name = _name(p)
            if name in SHARED:
                form = (p.help, p.get_help_record(ctx)[0])
                assert seen.setdefault(name, form) == form, f"{' '.join(path)} {name}: {form} vs {seen[name]}"
            if name == "--workers":
                assert "worker processes" in p.help.lower(), p.help
            if name == "--classes":
                assert p.help.startswith("Lesion classes"), p.help
            if name == "--fold":
                assert "0..K-1" in p.help, p.help
            if name == "--precision":
                assert "auto" in p.get_help_record(ctx)[0] and "32-true" in p.get_help_record(ctx)[0]
    assert {"--overwrite", "--size", "--threads", "--sampling-steps"} <= set(seen)


def test_generate_out_says_when_it_is_required():
    res = runner.invoke(app, ["generate", "--help"], terminal_width=200)
    assert re.search(r"--out .*required unless --print-prompt", res.output), res.output
    res = runner.invoke(app, ["generate", "--random-weights", "--size", "tiny"])
    assert res.exit_code == 2 and "Missing option '--out'" in res.output, res.output


def test_command_summaries_are_whole():
    for path, group in GROUPS.items():
        text = " ".join(runner.invoke(app, [*path, "--help"]).output.split())
        for cmd in group.commands.values():
            summary = " ".join((cmd.help or "").strip().split("\n\n")[0].split())
            assert summary and summary in text, f"{' '.join(path)} cuts {cmd.name}'s summary: {summary}"
        assert "..." not in text.split("Commands:")[1]


@pytest.mark.parametrize("args,wording", [
    (["train", "--data", "d", "--out", "o", "--lr", "0"], "Input should be greater than 0"),
    (["mame", "train", "--data", "d", "--out", "o", "--lr", "-1"], "Input should be greater than 0"),
    (["augment", "--healthy", "h", "--n", "1", "--out", "o", "--sigma", "0"], "Input should be greater than 0"),
    (["demo", "--minutes", "0"], "Input should be greater than 0"),
    (["train", "--data", "d", "--out", "o", "--precision", "fp8"], "'fp8' is not one of 'auto', '32-true'"),
    (["mame", "train", "--data", "d", "--out", "o", "--precision", "fp8"], "'fp8' is not one of 'auto', '32-true'"),
    (["benchmark", "--precision", "fp8"], "'fp8' is not one of 'auto', '32-true'"),
    (["generate", "--vendor", "agfa"], "'agfa' is not one of 'siemens', 'hologic'"),
    (["predict", "--run", "r", "--out", "o", "--device", "tpu"], "'tpu' is not one of 'auto', 'cpu'"),
    (["benchmark", "--device", "tpu"], "'tpu' is not one of 'auto', 'cpu'"),
    (["inpaint", "--image", "x", "--auto-box", "--out", "o", "--mode", "tile"], "'tile' is not one of 'whole', 'crop'"),
    (["prepare", "cdd-cesm", "--root", "r", "--out", "o", "--modality", "XX"], "'XX' is not one of"),
])
def test_one_wording_per_kind_of_bad_value(tmp_path, monkeypatch, args, wording):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and wording in res.output, res.output
    assert list(tmp_path.iterdir()) == []


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "modise", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "modise" in out.stdout.lower()
