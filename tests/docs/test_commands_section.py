"""README's "Commands" section is the CLI: every command it lists exists and takes the options it
says (``--config``, ``--json``, ``--help``, with the exceptions it names), and every command of
the CLI is listed; every `broker ...` named in the prose of README.md and docs/ exists, with the
options it shows. Read from broker's own argument parser, so no process is started."""

from __future__ import annotations

import argparse
import re

from broker.cli import build_parser
from tests.support.doc_snippets import PAGES, ROOT

SECTION = "## Commands"
# the commands of a person at a terminal (docs/cli.md): a broker URL, no server config
CLIENT = ("login", "logout", "roles", "credentials", "token", "exec")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> dict[str, set[str]]:
    """Every leaf command (``"admin users create"``) with its option strings."""
    children = subcommands(parser)
    if not children:
        return {" ".join(path): {o for a in parser._actions for o in a.option_strings}}
    found: dict[str, set[str]] = {}
    for name, child in children.items():
        found.update(cli_commands(child, (*path, name)))
    return found


def section() -> str:
    text = (ROOT / "README.md").read_text("utf-8")
    rest = text[text.index(SECTION) + len(SECTION) :]
    return rest[: rest.index("\n## ")] if "\n## " in rest else rest


def listed() -> list[str]:
    """``broker admin users list|create`` -> ``admin users list``, ``admin users create``."""
    commands = []
    for m in re.finditer(r"`broker ([a-z -]+(?:\|[a-z-]+)*)`", section()):
        *head, last = m.group(1).split()
        commands += [" ".join([*head, alt]) for alt in last.split("|")]
    return commands


def test_every_listed_command_exists_and_every_command_is_listed() -> None:
    cli = cli_commands(build_parser())
    assert sorted(set(listed()) - set(cli)) == []
    assert sorted(set(cli) - set(listed())) == []


def test_each_takes_config_json_and_help_but_the_named_exceptions() -> None:
    text = " ".join(section().split())
    assert "`broker serve` has no `--json`" in text
    assert (
        "`broker admin policies validate` reads only the file it is given (no `--config`)" in text
    )
    assert (
        "`broker login`, `broker logout`, `broker roles`, `broker credentials`, `broker token` "
        "and `broker exec` need no `--config` (they take `--url`), and `broker exec` has no "
        "`--json`" in text
    )
    exceptions = {("serve", "--json"), ("admin policies validate", "--config")}
    exceptions |= {(c, "--config") for c in CLIENT} | {("exec", "--json")}
    for command, options in cli_commands(build_parser()).items():
        for option in ("--config", "--json", "--help"):
            assert (option in options) != ((command, option) in exceptions), (command, option)


# commands the pages name as not there yet, by the words after `broker`
NOT_YET: dict[str, str] = {}


def test_every_command_named_in_the_prose_exists_with_its_options() -> None:
    cli = cli_commands(build_parser())
    groups = {" ".join(c.split()[:n]) for c in cli for n in range(1, len(c.split()))}
    pages = [p for pattern in PAGES for p in sorted(ROOT.glob(pattern))]
    for page in pages:
        for span in re.findall(r"`broker ([^`]+)`", page.read_text("utf-8")):
            words = span.split()
            path = [w for w in words if re.fullmatch(r"[a-z][a-z|-]*", w)][:3]
            alternatives: list[list[str]] = [[]] if path else []
            for word in path:
                alternatives = [[*a, alt] for a in alternatives for alt in word.split("|")]
            for alternative in alternatives:
                # the longest prefix that names a command (the rest are arguments, e.g. alice)
                command = next(
                    (
                        " ".join(alternative[:n])
                        for n in (3, 2, 1)
                        if " ".join(alternative[:n]) in cli
                    ),
                    None,
                )
                where = f"{page.name}: `broker {span}`"
                if command is None:
                    name = " ".join(alternative)
                    assert name in groups or name in NOT_YET, where
                    continue
                for option in (w for w in words if w.startswith("--") and w != "--"):
                    assert option in cli[command], where
