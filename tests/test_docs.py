"""The documentation site is built and checked like code (issue 30).

- ``mkdocs build --strict`` passes: no broken link or anchor, every page in the nav (needs the ``docs``
  extra, which the README's test command installs; without it these tests are skipped).
- Every command and option of the CLI (walked from ``modise.cli.app`` here, independently of the hook
  that generates the reference) has an entry in the built reference: the command's heading
  ``modise <command>`` and each of its option names, older spellings included.
- Every shell block marked ``<!-- runnable -->`` in the tutorials runs, at tiny size, from a scratch
  folder that sees the repository's ``src/`` (the sample flow runs with ``STEPS=2``).
- The README stays short: at most 150 lines, its first two code blocks the two set-up commands.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from modise.cli import app

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
RUNNABLE = re.compile(r"<!--\s*runnable\s*-->\s*\n```(?:bash|sh)\n(.*?)\n```", re.S)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]' -c constraints.txt")
    pytest.importorskip("material", reason="the docs extra is not installed")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-4000:]}"
    return out


def _commands(cmd=None, path: tuple[str, ...] = ()):
    cmd = cmd or typer.main.get_command(app)
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        if not sub.hidden:
            yield from _commands(sub, path + (name,))


def _section(page: str, anchor: str) -> str:
    """The HTML from the heading with id ``anchor`` to the next heading of the same or a higher level."""
    m = re.search(rf'<h([12])[^>]*id="{re.escape(anchor)}"', page)
    assert m, f"no heading with id {anchor!r}"
    end = re.search(rf"<h[1-{m.group(1)}][ >]", page[m.end():])
    return page[m.start(): m.end() + end.start() if end else len(page)]


def test_mkdocs_build_strict(site: Path) -> None:
    assert (site / "index.html").is_file() and (site / "search" / "search_index.json").is_file()
    index = (site / "index.html").read_text()
    fetched = re.findall(r'<(?:script|link)[^>]*(?:src|href)="(https?://[^"]+)"', index)
    assert not fetched and "fonts.googleapis.com" not in index, f"the site must fetch nothing (theme.font: false): {fetched}"


def test_every_cli_command_and_option_has_a_reference_entry(site: Path) -> None:
    missing = []
    for path, cmd in _commands():
        page_file = site / "reference" / "cli" / (path[0] if path else "modise") / "index.html"
        if not page_file.is_file():
            missing.append(f"modise {' '.join(path)}: no page {page_file.relative_to(site)}")
            continue
        page = page_file.read_text()
        anchor = "-".join(("modise",) + path)
        try:
            section = _section(page, anchor)
        except AssertionError:
            missing.append(f"modise {' '.join(path)}: no heading")
            continue
        heading = html.unescape(re.sub(r"<[^>]+>", "", section[: section.index("</h")]))
        if " ".join(("modise",) + path) not in heading:
            missing.append(f"modise {' '.join(path)}: heading reads {heading!r}")
        text = html.unescape(re.sub(r"<[^>]+>", " ", section))
        for p in cmd.params:
            if getattr(p, "hidden", False):
                continue
            names = list(getattr(p, "opts", [])) + list(getattr(p, "secondary_opts", []))
            if p.param_type_name == "argument":
                names = [p.name or ""]
            for n in names:
                if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text):
                    missing.append(f"modise {' '.join(path)} {n}")
    assert not missing, "CLI entries without a reference entry: " + "; ".join(missing)


def _runnable_blocks() -> list[tuple[str, str]]:
    return [(f"{md.relative_to(DOCS)}#{i}", block)
            for md in sorted((DOCS / "tutorials").glob("*.md"))
            for i, block in enumerate(RUNNABLE.findall(md.read_text()))]


def test_the_sample_flow_is_marked_runnable() -> None:
    blocks = dict(_runnable_blocks())
    assert "tutorials/first-run.md#0" in blocks and "modise evaluate" in blocks["tutorials/first-run.md#0"]
    assert len(blocks) >= 2


@pytest.mark.parametrize("name,block", _runnable_blocks(), ids=[n for n, _ in _runnable_blocks()])
def test_runnable_tutorial_block(name: str, block: str, tmp_path: Path) -> None:
    """Each marked block, as a reader runs it from the repository root (a scratch copy: ``src`` linked),
    at tiny size: ``STEPS=2`` (the sample flow: 70 s in the suite on 2 shared cores, most of it reading
    full-size mammograms; the own-data block: 3 s)."""
    (tmp_path / "src").symlink_to(REPO / "src")
    modise = shutil.which("modise")
    assert modise, "the modise command is not on PATH (pip install -e .)"
    env = {**os.environ, "STEPS": "2", "MODISE_THREADS": os.environ.get("MODISE_THREADS", "2"),
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{block}\n--- stderr\n{proc.stderr[-3000:]}"
    if "modise evaluate" in block:
        metrics = next(tmp_path.glob("eval/*/metrics.md"))
        assert "PQ" in metrics.read_text()


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    assert blocks[0].startswith("python3 -m venv") and "modise demo" in blocks[0]
    ci = (REPO / ".ci" / "run").read_text()
    assert blocks[1] in ci, "the README's test command and .ci/run differ"
    assert "'.[dev,docs]'" in blocks[1]
    first_run = (DOCS / "tutorials" / "first-run.md").read_text()
    assert blocks[0] in first_run and blocks[1] in first_run, "docs/tutorials/first-run.md quotes both commands as the README has them"


def test_every_documented_command_line_uses_real_commands_and_options() -> None:
    """Each ``modise ...`` line in a shell block of the docs or the README names an existing command
    and only options that command has (a renamed or removed option fails here, not in a reader's shell)."""
    root = typer.main.get_command(app)
    problems, seen = [], 0
    for f in sorted(DOCS.rglob("*.md")) + [REPO / "README.md"]:
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", f.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.split(r"\s+#", line)[0]
                for m in re.finditer(r"(?:^|[\s;&|(])(?:-m )?modise(\s.*?)(?=&&|;|\||$)", line):
                    toks, cmd, path = m.group(1).split(), root, []
                    while toks and toks[0] in getattr(cmd, "commands", {}):
                        cmd = cmd.commands[toks[0]]
                        path.append(toks.pop(0))
                    seen += 1
                    opts = {o for p in cmd.params for o in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}
                    problems += [f"{f.relative_to(REPO)}: modise {' '.join(path)} {t}" for t in toks
                                 if t.startswith("--") and t.split("=")[0] not in opts | {"--help", "-h"}]
    assert seen > 50, seen
    assert not problems, "; ".join(problems)
