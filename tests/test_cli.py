"""The `acflow` command line: subcommands listed, unbuilt ones refuse clearly with a non-zero status."""
from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer.cli", *args], capture_output=True, text=True)


def test_help_lists_subcommands():
    p = run("--help")
    assert p.returncode == 0
    for sub in ("analyze", "live", "keys", "replay", "diff", "lab"):
        assert sub in p.stdout


@pytest.mark.parametrize("args", [["replay", "x.pcapng"], ["diff", "a", "b"]])
def test_unbuilt_subcommands_say_so(args):
    p = run(*args)
    assert p.returncode == 3
    assert "not implemented yet" in p.stderr
    assert p.stdout == ""


def test_lab_list():
    p = run("lab", "--list")
    assert p.returncode == 0
    assert "baseline" in p.stdout and "dtls-blocked" in p.stdout


def test_lab_unknown_scenario_fails_clearly(tmp_path):
    p = run("lab", "--out", str(tmp_path), "no-such-scenario")
    assert p.returncode != 0
    assert "unknown scenario" in p.stderr
