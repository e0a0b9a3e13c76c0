"""mkdocs hooks: pages generated from the code at build time, so the reference cannot drift from it.

A page holds a marker comment and the hook replaces it:
- ``<!-- vcritic:cli -->``: every command of the Typer app, with its usage, arguments, options and epilog;
- ``<!-- vcritic:train-config -->``: the fields of ``vcritic.training.config.TrainConfig`` with their help, and the
  shipped presets;
- ``<!-- vcritic:modules -->``: every folder and module of the package with the first paragraph of its docstring;
- ``<!-- vcritic:benchmarks -->``: every script in ``benchmarks/`` with the first paragraph of its docstring.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import re
from pathlib import Path

MARKERS = (
    "<!-- vcritic:cli -->",
    "<!-- vcritic:train-config -->",
    "<!-- vcritic:modules -->",
    "<!-- vcritic:benchmarks -->",
)
ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vcritic"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKERS[0] in markdown:
        markdown = markdown.replace(MARKERS[0], cli_reference())
    if MARKERS[1] in markdown:
        markdown = markdown.replace(MARKERS[1], train_config_reference())
    if MARKERS[2] in markdown:
        markdown = markdown.replace(MARKERS[2], module_table())
    if MARKERS[3] in markdown:
        markdown = markdown.replace(MARKERS[3], benchmark_table())
    return markdown


# Docstrings are written with Sphinx roles (:func:`x`); markdown shows them as the code span alone.
ROLE = re.compile(r":(?:mod|class|func|meth|attr|exc|data|obj):(?=<code|`)")


def on_page_content(html_text: str, page, config, files) -> str:
    return ROLE.sub("", html_text)


# -- CLI ---------------------------------------------------------------------------------------------------------
def cli_reference() -> str:
    import typer.main

    from vcritic.cli.app import app

    root = typer.main.get_command(app)
    parts = []
    # Typer ships its own copy of click, so commands are told apart by what they have, not by click's classes.
    for path, command, ctx in _walk(root, root.context_class(root, info_name="vcritic")):
        parts.append(_command_page(path, command, ctx))
    return "\n\n".join(parts)


def _is_group(command) -> bool:
    return hasattr(command, "list_commands")


def _walk(command, ctx, path: tuple[str, ...] = ("vcritic",)):
    if not _is_group(command):
        yield path, command, ctx
        return
    yield path, command, ctx  # a group: its own heading (global options, its commands), then each command
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        yield from _walk(sub, sub.context_class(sub, info_name=name, parent=ctx), (*path, name))


def _command_page(path: tuple[str, ...], command, ctx) -> str:
    """One command as its --help shows it: the same help records, as markdown tables."""
    name = " ".join(path)
    lines = [f"## `{name}`", "", _text(command.help or command.short_help or "").strip(), ""]
    usage = command.get_usage(ctx).removeprefix("Usage:").strip()
    lines += ["```text", usage, "```", ""]
    params = [p for p in command.get_params(ctx) if not p.hidden and p.name != "help"]
    for kind, header in (("argument", "argument"), ("option", "option")):
        records = [p.get_help_record(ctx) for p in params if p.param_type_name == kind]
        records = [r for r in records if r]
        if records:
            lines += [f"| {header} | description |", "|---|---|"]
            lines += [f"| `{_code(term)}` | {_cell(text)} |" for term, text in records]
            lines.append("")
    if _is_group(command):
        subs = ", ".join(f"`{name} {sub}`" for sub in command.list_commands(ctx))
        lines += [f"Commands: {subs}.", ""]
    if command.epilog:
        lines += [_text(command.epilog), ""]
    return "\n".join(lines)


def _code(term: str) -> str:
    """A help record's flags and metavar inside a table's code span."""
    return term.replace("|", "\\|").replace("`", "'")


def _text(text: str) -> str:
    """Help text as markdown: Typer's rich markup is plain here, and nothing in it may open an HTML tag."""
    return html.escape(text, quote=False)


def _cell(text: str) -> str:
    return _text(" ".join(text.split())).replace("|", "\\|")


# -- training config ---------------------------------------------------------------------------------------------
def train_config_reference() -> str:
    from vcritic.training.config import PRESET_DIR, TrainConfig, presets

    lines = ["| key | type | default | what it sets |", "|---|---|---|---|"]
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        value = getattr(defaults, f.name)
        shown = "null" if value is None else (", ".join(value) if isinstance(value, list) else value)
        lines.append(f"| `{f.name}` | `{f.type}` | `{shown}` | {_cell(f.metadata.get('help', ''))} |")
    lines.append("")
    for name in presets():
        lines += [f"### Preset `{name}`", "", "```yaml", (PRESET_DIR / f"{name}.yaml").read_text().rstrip(), "```", ""]
    return "\n".join(lines)


# -- module layout -----------------------------------------------------------------------------------------------
def module_table() -> str:
    lines = ["| module | what it holds |", "|---|---|"]
    for path in sorted(PACKAGE.rglob("*.py"), key=lambda p: (p.parent.relative_to(PACKAGE).parts, p.name)):
        relative = path.relative_to(PACKAGE.parent)
        name = f"{relative.parent}/" if path.name == "__init__.py" else str(relative)
        lines.append(f"| `{name}` | {_cell(_first_line(path))} |")
    return "\n".join(lines)


def benchmark_table() -> str:
    lines = ["| script | what it measures |", "|---|---|"]
    for path in sorted((ROOT / "benchmarks").iterdir()):
        if path.suffix in (".py", ".sh"):
            lines.append(f"| `benchmarks/{path.name}` | {_cell(_first_line(path))} |")
    return "\n".join(lines)


def _first_line(path: Path) -> str:
    """The first paragraph of a Python file's docstring, or of a shell script's leading comment."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".sh":
        comment = []
        for line in text.splitlines()[1:]:
            if not line.startswith("#") or line.strip() == "#":
                break
            comment.append(line.lstrip("# "))
        doc = "\n".join(comment)
    else:
        doc = ast.get_docstring(ast.parse(text)) or ""
    paragraph = doc.split("\n\n")[0]
    return ROLE.sub("", " ".join(paragraph.split()).replace("``", "`"))
