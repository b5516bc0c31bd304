"""The README and the CLI agree (in the spirit of sqlite-utils' tests/test_docs.py).

Every command has an example in a fenced README code block, every option of every
command is named in the README, and every ``curate ...`` line in a fenced shell block
parses with click (options exist, values convert, required options are given). Nothing
is executed: the lines are parsed with ``make_context``, never invoked.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from curate.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
SHELL_FENCES = ("bash", "sh", "shell", "console")
SEPARATORS = {"&&", "||", ";", "|", "&"}
HELP_OR_VERSION = {"--help", "-h", "--version"}


def walk(cmd: click.Command = main, path: tuple[str, ...] = ("curate",)):
    """``(path, command)`` for the group and every command below it."""
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from walk(sub, path + (name,))


def long_options(cmd: click.Command) -> list[str]:
    params = cmd.get_params(click.Context(cmd))  # train builds its options on first use
    return sorted({o for p in params if isinstance(p, click.Option) and p.name != "help"
                   for o in p.opts + p.secondary_opts if o.startswith("--")})


def shell_lines(text: str) -> list[str]:
    """The logical lines (``\\`` continuations joined) of the fenced shell blocks."""
    lines, block, buf = [], None, ""
    for raw in text.splitlines():
        fence = re.match(r"^\s*```(\w*)", raw)
        if fence:
            block = None if block is not None else fence.group(1)
            continue
        if block not in SHELL_FENCES:
            continue
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        lines.append(buf + raw)
        buf = ""
    return lines


def curate_invocations(text: str) -> list[list[str]]:
    """The argument lists after ``curate`` in every command of the fenced shell lines."""
    found = []
    for line in shell_lines(text):
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lex.whitespace_split, lex.commenters = True, "#"
        words: list[str] = []
        for tok in list(lex) + [";"]:
            if tok not in SEPARATORS:
                words.append(tok)
                continue
            while words and re.match(r"^\w+=", words[0]):  # VAR=value curate ...
                words.pop(0)
            if words and words[0] == "curate":
                found.append(words[1:])
            words = []
    return found


def parse(args: list[str]) -> tuple[str, ...]:
    """Parse ``curate ARGS`` as click would, without running it; return the command path.

    With --help or --version, parsing is resilient (their callbacks would exit)."""
    lenient = bool(HELP_OR_VERSION & set(args))
    cmd, path, ctx = main, ("curate",), None
    while isinstance(cmd, click.Group):
        ctx = click.Context(cmd, info_name=path[-1], parent=ctx, resilient_parsing=lenient)
        rest = click.Command.parse_args(cmd, ctx, list(args))  # group options; keeps the rest
        if not rest:
            assert lenient, f"`{' '.join(path)}` needs a command"
            return path
        name, cmd, args = cmd.resolve_command(ctx, rest)
        path += (name,)
    cmd.make_context(path[-1], list(args), parent=ctx, resilient_parsing=lenient)
    return path


INVOCATIONS = curate_invocations(README.read_text())


def test_the_readme_has_curate_lines():
    assert len(INVOCATIONS) >= 40, INVOCATIONS


@pytest.mark.parametrize("args", INVOCATIONS, ids=lambda a: " ".join(a)[:60])
def test_readme_lines_parse(args):
    try:
        parse(args)
    except click.UsageError as e:
        pytest.fail(f"README: `curate {' '.join(args)}`: {e.format_message()}")


def test_every_command_has_a_readme_example():
    shown = set()
    for args in INVOCATIONS:
        path = parse(args)
        shown |= {path[:i] for i in range(1, len(path) + 1)}
    missing = [" ".join(p) for p, _ in walk() if p not in shown]
    assert not missing, f"commands without an example in a README code block: {missing}"


def test_every_option_is_in_the_readme():
    text = README.read_text()
    missing = {" ".join(p): [o for o in long_options(c) if not re.search(re.escape(o) + r"(?![\w-])", text)]
               for p, c in walk()}
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, f"options the README never names: {missing}"


@pytest.mark.parametrize("line, error", [
    ("curate select --budgte 5", "No such option"),
    ("curate select --strategy kcenter", "Missing option '--budget'"),
    ("curate select --budget many", "not a valid integer"),
    ("curate embed --dtype float64", "float64"),
    ("curate no-such-command", "No such command"),
    ("curate push label-studio --selection latest", "Missing option '--project'"),
])
def test_a_wrong_line_fails_to_parse(line, error):
    """The check above can fail: typos, missing required options and bad values do."""
    [args] = curate_invocations(f"```bash\n{line}   # comment\n```")
    with pytest.raises(click.UsageError) as e:
        parse(args)
    assert error in e.value.format_message()


def test_the_extractor_reads_shell_syntax():
    text = ("```bash\nLABEL=x curate init p && cd p   # make it\n"
            "curate ingest a/ \\\n    --batch b --json | jq .\n```\n"
            "```python\ncurate select --budget 1\n```\n")
    assert curate_invocations(text) == [["init", "p"], ["ingest", "a/", "--batch", "b", "--json"]]
    assert parse(["--help"]) == ("curate",)
    assert parse(["-w", "ws", "push", "label-studio", "--project", "p"]) == (
        "curate", "push", "label-studio")
