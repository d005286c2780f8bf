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


@pytest.mark.parametrize("command", ["analyze", "keys"])
def test_missing_dependency_is_named_not_called_unbuilt(command):
    # lxml unimportable, as in a broken installation: the error names it, never "not implemented yet"
    code = ("import sys; sys.modules['lxml'] = None; from analyzer.cli import main; "
            f"sys.argv = ['acflow', {command!r}, 'x.pcapng'] + (['-o', 'k'] if {command!r} == 'keys' else []); main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 1, p.stderr
    assert "missing dependency lxml" in p.stderr and "reinstall acflow" in p.stderr
    assert "not implemented" not in p.stderr and "Traceback" not in p.stderr


def test_a_bug_in_acflow_is_not_taken_for_a_missing_dependency():
    # an ImportError inside acflow's own packages is a bug: it propagates (traceback), not "reinstall"
    code = ("import sys; sys.modules['analyzer.driver'] = None; from analyzer.cli import main; "
            "sys.argv = ['acflow', 'analyze', 'x.pcapng']; main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 1 and "Traceback" in p.stderr and "reinstall" not in p.stderr
