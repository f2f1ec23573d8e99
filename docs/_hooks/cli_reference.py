"""mkdocs hook: the command-line reference, generated at build time from the Typer/Click app itself
(``modise.cli.app``), so it cannot drift from ``--help``.

One page per top-level command (``docs/reference/cli/<command>.md``; a group's subcommands share
their group's page) plus ``modise.md`` for the global options. Each command shows as ``modise
<command>`` with its usage, its help text and one row per option: the names ``--help`` lists, the
older spellings that still parse, the value it takes, and the help with its default exactly as
``--help`` prints it. The pages are added to the nav after the entry ``reference/cli/index.md``.
"""

from __future__ import annotations

import html
import re
from typing import Any, Iterator

CLI_DIR = "reference/cli"
NAV_ANCHOR = f"{CLI_DIR}/index.md"
_GENERATED: dict[str, str] = {}  # on_config makes the pages (and their nav entries), on_files adds them


def _root() -> Any:
    import typer.main

    from modise.cli import app

    return typer.main.get_command(app)


def walk(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of the app, groups included, as (path below ``modise``, click command), in help order."""
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        if not sub.hidden:
            yield from walk(sub, path + (name,))


def page_of(path: tuple[str, ...]) -> str:
    """The generated page (relative to docs/) that documents the command at ``path``."""
    return f"{CLI_DIR}/{path[0] if path else 'modise'}.md"


def anchor(path: tuple[str, ...], option: str = "") -> str:
    """The HTML id of a command's heading, or of one of its options' rows."""
    return "-".join(("modise",) + path) + (f"--{option.lstrip('-')}" if option else "")


def _text(s: str) -> str:
    """Help text as Markdown-safe text: HTML-escaped, emphasis and table characters neutralised."""
    s = html.escape(" ".join(s.split()), quote=False)
    return re.sub(r"([*_\[\]|])", r"\\\1", s)


def _code(s: str) -> str:
    """Inline code that is safe inside a Markdown table cell (metavars hold '<', '>' and '|')."""
    return "<code>" + html.escape(s).replace("|", "&#124;") + "</code>"


def _paragraphs(help_text: str | None) -> str:
    paras = [p for p in re.split(r"\n\s*\n", (help_text or "").replace("\b", "")) if p.strip()]
    return "\n\n".join(_text(p) for p in paras)


def _option_rows(cmd: Any, ctx: Any, path: tuple[str, ...]) -> list[str]:
    from modise.cli_options import visible_names

    rows = ["| option | value and default | older spelling |", "|---|---|---|"]
    for p in cmd.params:
        if getattr(p, "param_type_name", "") == "argument":
            first, what = p.get_help_record(ctx) or ((p.name or "").upper(), "")
            rows.append(f'| <a id="{anchor(path, p.name or "")}"></a>{_code(first)} (argument) | {_text(what)} | |')
            continue
        if getattr(p, "hidden", False):
            continue
        names = list(p.opts) + list(p.secondary_opts)
        shown = visible_names(list(p.opts)) + list(p.secondary_opts)
        older = [n for n in names if n not in shown]
        saved = p.opts
        try:
            p.opts = visible_names(list(p.opts))
            record = p.get_help_record(ctx)
        finally:
            p.opts = saved
        first, what = record if record else (" / ".join(shown), p.help or "")
        long = next((n for n in shown if n.startswith("--")), shown[0])
        rows.append(f'| <a id="{anchor(path, long)}"></a>{_code(first)} | {_text(what)} | '
                    f"{' '.join(_code(n) for n in older)} |")
    return rows


def render_command(path: tuple[str, ...], cmd: Any, level: int) -> str:
    """One command's section: heading ``modise <path>``, usage, help, options (and its subcommands' list)."""
    name = " ".join(("modise",) + path)
    ctx = cmd.context_class(cmd, info_name=name)  # Typer's own Click: its context class, not click's
    out = [f"{'#' * level} `{name}` {{#{anchor(path)}}}", ""]
    out += ["```text", " ".join(cmd.collect_usage_pieces(ctx)).join([f"Usage: {name} ", ""]), "```", ""]
    if cmd.help:
        out += [_paragraphs(cmd.help), ""]
    subs = [(n, c) for n, c in getattr(cmd, "commands", {}).items() if not c.hidden]
    if subs:
        out += ["| command | what it does |", "|---|---|"]
        for n, c in subs:
            sub = path + (n,)
            target = f"#{anchor(sub)}" if page_of(sub) == page_of(path) else f"{page_of(sub).rsplit('/', 1)[1]}#{anchor(sub)}"
            out.append(f"| [`modise {' '.join(path + (n,))}`]({target}) | {_text(c.get_short_help_str())} |")
        out.append("")
    if cmd.params:
        out += _option_rows(cmd, ctx, path) + [""]
    return "\n".join(out)


def pages() -> dict[str, str]:
    """Generated Markdown by page path (relative to docs/)."""
    by_page: dict[str, list[str]] = {}
    for path, cmd in walk(_root()):
        level = 1 if len(path) <= 1 else 2
        by_page.setdefault(page_of(path), []).append(render_command(path, cmd, level))
    note = ("<!-- generated by docs/_hooks/cli_reference.py from modise.cli.app at build time: edit the "
            "command's docstring or option help, not this page -->\n\n")
    return {p: note + "\n".join(parts) for p, parts in by_page.items()}


def _insert_nav(nav: list, titles: list[tuple[str, str]]) -> bool:
    for i, item in enumerate(nav):
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if value == NAV_ANCHOR:
            nav[i + 1:i + 1] = [{t: p} for t, p in titles]
            return True
        if isinstance(value, list) and _insert_nav(value, titles):
            return True
    return False


def on_config(config: Any) -> Any:
    generated = pages()
    titles = [(("modise " + p.rsplit("/", 1)[1][:-3]) if not p.endswith("/modise.md") else "modise (global options)", p)
              for p in generated]
    if not _insert_nav(config["nav"], titles):
        raise ValueError(f"mkdocs.yml nav has no entry {NAV_ANCHOR!r} to put the CLI reference after")
    _GENERATED.clear()
    _GENERATED.update(generated)
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path, content in _GENERATED.items():
        files.append(File.generated(config, path, content=content))
    return files
