"""The `acflow` command line: subcommands listed, unbuilt ones refuse clearly with a non-zero status."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib

import pytest
import setuptools

from .conftest import ROOT

SAMPLE = ROOT / "samples" / "baseline" / "capture.pcapng"
KEYS = ROOT / "samples" / "baseline" / "keys.log"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer.cli", *args], capture_output=True, text=True)


def test_help_lists_subcommands():
    p = run("--help")
    assert p.returncode == 0
    for sub in ("analyze", "live", "keys", "replay", "diff", "lab"):
        assert sub in p.stdout


@pytest.mark.parametrize("args", [["replay", "x.pcapng"]])
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


def test_lab_without_the_source_tree_says_so(tmp_path):
    # installed without the checkout (a wheel): no lab/ beside analyzer/; `acflow lab` says where the lab is, exit 5
    pkg = tmp_path / "analyzer"
    pkg.mkdir()
    for f in ("__init__.py", "cli.py"):
        shutil.copy(ROOT / "analyzer" / f, pkg / f)
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from analyzer.cli import main; "
            "sys.argv = ['acflow', 'lab', '--list']; main()")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 5, p.stderr
    assert "part of the acflow source tree" in p.stderr and "python -m lab" in p.stderr
    assert "not implemented" not in p.stderr and "Traceback" not in p.stderr and p.stdout == ""


def test_the_analyzer_does_not_import_the_lab():
    code = ("import sys, analyzer.cli, analyzer.analyze; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lab'))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr


def test_installed_packages_are_the_product_only():
    # what pip installs (pyproject's packages.find): the analyzer, its dissectors and the scripted gateway
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = {p.split(".")[0] for p in setuptools.find_packages(str(ROOT), include=include)}
    assert tops == {"analyzer", "dissectors", "replay"}


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


def test_the_program_ends_without_the_interpreter_teardown_once_the_report_is_out(tmp_path):
    """`acflow analyze` (the program, not `main` called in a process that goes on) flushes its outputs, runs the exit
    handlers and ends with os._exit: no object is finalised by a teardown (after a big capture the collector's walk
    over the analysis' objects, ~0.1 s). The report, the status (here --fail-on's 1) and the exit handlers are as
    before."""
    code = ("import atexit, sys\n"
            "import analyzer.cli as cli\n"
            "class Witness:\n"
            "    def __del__(self):\n"
            "        sys.stderr.write('teardown ran\\n')\n"
            "cli.witness = Witness()\n"
            "atexit.register(lambda: sys.stderr.write('exit handler ran\\n'))\n"
            f"sys.argv = ['acflow', 'analyze', {str(SAMPLE)!r}, '--keylog', {str(KEYS)!r}, '--format', 'json',\n"
            "            '--fail-on', 'info']\n"
            "cli.run()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    assert json.loads(p.stdout)["sessions"], p.stdout[:200]
    assert "exit handler ran" in p.stderr and "teardown ran" not in p.stderr
    # `main` itself, as click's test runner and scripts call it, returns (its process goes on)
    code = code.replace("cli.run()", "try:\n    cli.main()\n"
                                     "except SystemExit as e:\n    print('status', e.code, file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert "status 1" in p.stderr and "teardown ran" in p.stderr
