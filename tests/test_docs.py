"""The documentation names what the code has (cheap: no capture is analysed).

* Every `acflow …` command line in README.md's code blocks names a command that exists and only options that
  command's click definition has: every line of a ```sh block, and the `$ acflow …` lines of output blocks.
* Every finding id the analyzer can emit (each rule module's RULE_IDS, and every `Finding(id="…")` in analyzer/)
  has exactly one `### \\`ID\\`` entry in docs/findings.md, and every entry there is such an id.
* Every module of analyzer/, dissectors/ and replay/ is named in docs/architecture.md: by its path, or by its file
  name on a line (a table row) that names its package's directory.
"""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import click

from analyzer.cli import main

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("analyzer", "dissectors", "replay")


# -- README command lines ------------------------------------------------------------------------------------------

def _cut(line: str) -> str:
    """The command alone: up to a shell comment, `;`, `|` or `&&` outside quotes and [optional] brackets."""
    depth, quote = 0, ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif depth == 0 and (ch in ";|" or line.startswith("&&", i) or (ch == "#" and (i == 0 or line[i - 1] == " "))):
            return line[:i]
    return line


def command_lines(text: str) -> list[tuple[int, str]]:
    """(line number, command) of every `acflow …` command in the ``` blocks of a Markdown text."""
    out, lang, pending, start = [], None, "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("```"):
            lang = raw[3:].strip() if lang is None else None
            pending = ""
            continue
        if lang is None:
            continue
        line = raw.strip()
        if pending:
            line, n = pending + " " + line, start
            pending = ""
        if line.endswith("\\"):
            pending, start = line[:-1].strip(), n
            continue
        shell = lang in ("sh", "shell", "bash", "console")
        if line.startswith("$ "):
            line = line[2:]
        elif not shell:
            continue
        line = _cut(line).strip()
        if line.startswith("sudo "):
            line = line[5:].strip()
        if line.startswith("acflow "):
            out.append((n, line))
    return out


def _options_of(command: click.Command) -> set[str]:
    names = {"-h", "--help"}
    for p in command.params:
        if isinstance(p, click.Option):
            names |= set(p.opts) | set(p.secondary_opts)
    return names


def problems_in(text: str, group: click.Group = main) -> list[str]:
    """What a Markdown text's `acflow` command lines get wrong about the click definitions under ``group``."""
    bad = []
    for n, line in command_lines(text):
        words = line.split()[1:]
        command: click.Command = group
        path = ["acflow"]
        rest = words
        while isinstance(command, click.Group):
            name = next((w for w in rest if not w.startswith("-")), None)
            if name is None or name not in command.commands:
                bad.append(f"line {n}: `{' '.join(path)} {name}` is not a command: {line}")
                break
            path.append(name)
            command = command.commands[name]
            rest = rest[rest.index(name) + 1:]
        else:
            known = _options_of(command)
            for opt in re.findall(r"(?:^|(?<=[\s\[]))(--?[A-Za-z][\w-]*)", " ".join(words)):
                if opt not in known:
                    bad.append(f"line {n}: `{' '.join(path)}` has no option {opt}: {line}")
    return bad


def test_readme_command_lines_use_existing_commands_and_options():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = command_lines(text)
    commands = {line.split()[1] for _, line in found}
    assert {"analyze", "keys", "live", "replay", "diff", "batch"} <= commands, commands  # the parser sees them
    bad = problems_in(text)
    assert not bad, "README.md code blocks vs analyzer/cli.py:\n" + "\n".join(bad)


def test_the_command_line_check_sees_what_it_must():
    probe = "\n".join([
        "```sh",
        "acflow analyze c.pcapng --keylog k --no-such-option   # a comment with --not-checked",
        "sudo acflow live -i eth0 --write w.pcapng | tee --also-not-checked",
        "acflow replay client c.pcapng --gateway https://g/ \\",
        "    [--speed X | --no-timing] [--format terminal|json] [--no-such-flag]",
        "acflow analyse c.pcapng",
        "acflow replay rewind c.pcapng",
        "```",
        "```",
        "acflow 0.1.0 — an output line, not a command --whatever",
        "$ acflow diff a b --keylog-new k --nope; echo \"exit $?\"",
        "```",
    ])
    assert [n for n, _ in command_lines(probe)] == [2, 3, 4, 6, 7, 11]
    bad = problems_in(probe)
    assert len(bad) == 5, bad
    for what in ("--no-such-option", "--no-such-flag", "`acflow analyse`", "`acflow replay rewind`", "--nope"):
        assert any(what in b for b in bad), (what, bad)


# -- finding ids ---------------------------------------------------------------------------------------------------

def finding_ids_in_code() -> set[str]:
    from analyzer.rules import RULE_MODULES

    ids = {i for m in RULE_MODULES for i in importlib.import_module(f"analyzer.rules.{m}").RULE_IDS}
    ids |= set(importlib.import_module("analyzer.path_findings").RULE_IDS)  # (two captures: not session rules)
    for path in sorted((ROOT / "analyzer").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Finding":
                for kw in node.keywords:
                    if kw.arg == "id" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        ids.add(kw.value.value)
    return ids


def documented_ids(text: str) -> list[str]:
    return re.findall(r"^### `([A-Z0-9_]+)`", text, re.M)


def test_every_finding_id_is_documented_once():
    code = finding_ids_in_code()
    assert {"DPD_TIMEOUT", "CAPTURE_DAMAGED", "NO_VPN_SESSION", "ACFLOW_RULE_ERROR"} <= code  # both sources read
    docs = documented_ids((ROOT / "docs" / "findings.md").read_text(encoding="utf-8"))
    twice = sorted({i for i in docs if docs.count(i) > 1})
    assert not twice, f"documented more than once in docs/findings.md: {twice}"
    assert code <= set(docs), f"not documented in docs/findings.md: {sorted(code - set(docs))}"
    assert set(docs) <= code, f"docs/findings.md documents ids no code emits: {sorted(set(docs) - code)}"


# -- modules in docs/architecture.md ---------------------------------------------------------------------------------

def modules() -> list[str]:
    return sorted(p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                  if p.name != "__init__.py")


def unnamed_modules(text: str, paths: list[str]) -> list[str]:
    lines = text.splitlines()

    def named(path: str) -> bool:
        if path in text:
            return True
        directory, name = path.rsplit("/", 1)
        return any(f"{directory}/" in line and f"`{name}`" in line for line in lines)

    return [p for p in paths if not named(p)]


def test_every_module_is_named_in_the_architecture():
    paths = modules()
    assert "analyzer/tcptracker.py" in paths and "dissectors/tls/record.py" in paths and "replay/client.py" in paths
    missing = unnamed_modules((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"), paths)
    assert not missing, f"modules docs/architecture.md does not name: {missing}"


def test_the_module_check_sees_what_it_must():
    doc = "| `analyzer/pipeline.py` | … |\n| `analyzer/phases/` | `grouping.py` … |\nrecord.py in prose\n"
    paths = ["analyzer/pipeline.py", "analyzer/phases/grouping.py", "analyzer/phases/record.py", "analyzer/gone.py"]
    assert unnamed_modules(doc, paths) == ["analyzer/phases/record.py", "analyzer/gone.py"]
