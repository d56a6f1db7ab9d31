"""Pages generated at build time, so the site follows the code without edits.

- `commands/NAME.md`, one per `vizcnn` subcommand, from click itself: usage, help, arguments and
  an options table (flags, type, default, help) that cannot drift from the CLI; a link to the
  command's guide (`docs/NAME.md`, or the guide named in `GUIDES`) when there is one.
- `api/index.md`: an autosummary of every name in `vizcnn.__all__`, then one section per
  subpackage listing its `__all__` names that the top level does not re-export.

New commands (registered in `cli/main.py`) and new exports (`__all__`) appear on the next build.
Files are rewritten only when their text changes, so an incremental build stays incremental.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import click

# commands documented in another command's guide
GUIDES = {
    "filters": "features",
    "featuremaps": "features",
    "kernels": "features",
    "equivariance": "features",
    "neighbors": "features",
    "layers": "models",
    "models": "models",
    "train-digits": "models",
}

SUBPACKAGES = (
    "ablation",
    "attribution",
    "data",
    "deepdream",
    "features",
    "mining",
    "models",
    "optvis",
    "receptive",
    "report",
    "runs",
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _escape(text: str) -> str:
    """Plain help text as Markdown table cell content: no emphasis, HTML or cell breaks."""
    text = " ".join(text.split())
    for char in "\\|*_[]<>":
        text = text.replace(char, "\\" + char)
    if text.count("`") % 2:  # an unpaired backtick would swallow the rest of the cell
        text = text.replace("`", "\\`")
    return text


def _default(param: click.Parameter, ctx: click.Context) -> str:
    if isinstance(param, click.Option) and param.is_flag and not param.secondary_opts:
        value = param.get_default(ctx, call=False)
        return "on" if value is True else ""
    value = param.get_default(ctx, call=False)
    if value is None or callable(value) or type(value).__name__ == "Sentinel":
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else ""
    text = str(value)
    return f"`{text}`" if not set(text) & set("`|") else _escape(text)  # a | would split the cell


def _type(param: click.Parameter) -> str:
    if isinstance(param, click.Option) and param.is_flag:
        return "flag"
    kind = param.type
    if isinstance(kind, click.Choice):
        return " \\| ".join(f"`{c}`" for c in kind.choices)
    name = kind.name.upper() if kind.name else ""
    return name + (", repeatable" if getattr(param, "multiple", False) else "")


def _flags(param: click.Parameter) -> str:
    names = [*param.opts, *param.secondary_opts]
    return " / ".join(f"`{n}`" for n in names)


def _help_markdown(help_text: str) -> str:
    """click's help: paragraphs as text, `\\b` (no-rewrap) paragraphs as literal blocks."""
    blocks = []
    for paragraph in re.split(r"\n\s*\n", inspect.cleandoc(help_text)):
        if paragraph.startswith("\b"):
            lines = paragraph.splitlines()[1:]
            body = inspect.cleandoc("\n".join(lines)) if lines else ""
            blocks.append("```text\n" + body + "\n```")
        else:
            blocks.append(_escape(paragraph))
    return "\n\n".join(blocks)


def command_page(name: str, command: click.Command, docs: Path) -> str:
    ctx = click.Context(command, info_name=f"vizcnn {name}")
    guide = GUIDES.get(name, name)
    lines = [f"# `vizcnn {name}`", ""]
    if command.short_help and not command.help:
        lines += [_escape(command.short_help), ""]
    if (docs / f"{guide}.md").exists():
        lines += [
            f"The guide, with pictures and the Python equivalent: [{guide}](../{guide}.md).",
            "",
        ]
    lines += ["```text", command.get_usage(ctx), "```", ""]
    if command.help:
        lines += [_help_markdown(command.help), ""]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    if arguments:
        lines += ["## Arguments", "", "| argument | type | required |", "|---|---|---|"]
        for arg in arguments:
            required = "yes" if arg.required else "no"
            lines.append(f"| `{arg.human_readable_name}` | {_type(arg)} | {required} |")
        lines.append("")
    options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
    lines += ["## Options", "", "| option | type | default | what it does |", "|---|---|---|---|"]
    for option in options:
        row = (_flags(option), _type(option), _default(option, ctx), _escape(option.help or ""))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["| `-h` / `--help` | flag |  | Show the help and exit. |", ""]
    lines.append("*Generated from the command's click definition when the site is built.*")
    return "\n".join(lines) + "\n"


def write_command_pages(docs: Path) -> list[str]:
    from vizcnn.cli.main import app

    ctx = click.Context(app, info_name="vizcnn")
    names = app.list_commands(ctx)
    for name in names:
        command = app.get_command(ctx, name)
        if command is not None:
            _write(docs / "commands" / f"{name}.md", command_page(name, command, docs))
    index = [
        "# Commands",
        "",
        "Every `vizcnn` subcommand, its options generated from the CLI itself.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for name in names:
        command = app.get_command(ctx, name)
        short = _escape(command.get_short_help_str(limit=90)) if command else ""
        index.append(f"| [`vizcnn {name}`]({name}.md) | {short} |")
    index += ["", "```{toctree}", ":hidden:", ":glob:", "", "*", "```", ""]
    _write(docs / "commands" / "index.md", "\n".join(index))
    for stale in (docs / "commands").glob("*.md"):
        if stale.stem not in names and stale.stem != "index":
            stale.unlink()
    return names


def _autosummary(names: list[str], module: str) -> list[str]:
    return [
        "```{eval-rst}",
        f".. currentmodule:: {module}",
        "",
        ".. autosummary::",
        "   :toctree: generated",
        "",
        *[f"   {n}" for n in names],
        "```",
        "",
    ]


def write_api_index(docs: Path) -> tuple[int, int]:
    import vizcnn

    top = sorted(vizcnn.__all__, key=str.lower)
    exported = {id(getattr(vizcnn, n)) for n in top}
    lines = [
        "# API reference",
        "",
        "Every name `import vizcnn` exports (`vizcnn.__all__`), then what each subpackage adds.",
        "Shapes are `(B, C, H, W)` batches of images in [0, 1] unless a page says otherwise.",
        "",
        "## `vizcnn`",
        "",
        *_autosummary(top, "vizcnn"),
    ]
    extra = 0
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"vizcnn.{sub}")
        names: list[str] = [
            n
            for n in sorted(getattr(module, "__all__", []), key=str.lower)
            if id(getattr(module, n)) not in exported
            and not isinstance(getattr(module, n), (int, str, float, tuple, dict))
        ]
        doc = (inspect.getdoc(module) or "").split("\n\n")[0]
        lines += [f"## `vizcnn.{sub}`", "", _escape(doc), ""]
        if names:
            lines += _autosummary(names, f"vizcnn.{sub}")
            extra += len(names)
        else:
            lines += ["Everything it exports is in `vizcnn` above.", ""]
    _write(docs / "api" / "index.md", "\n".join(lines))
    return len(top), extra


def generate(app: Any) -> None:
    docs = Path(app.srcdir)
    write_command_pages(docs)
    write_api_index(docs)


def setup(app: Any) -> dict[str, Any]:
    # config-inited: before Sphinx lists the source files, which autosummary reads at builder-inited
    app.connect("config-inited", lambda app, config: generate(app))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
