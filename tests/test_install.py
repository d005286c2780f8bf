"""Installing acflow: the base install is what analysing needs and nothing else (no root, no apt packages), the
replay's dependencies are an extra that `acflow replay` names when missing, `make demo` installs only the base,
and the installed footprint is safe: no output, lab output included, goes into acflow's installation."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib

import pytest

from .conftest import ROOT, sample

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
IMPORT_NAME = {"cryptography": "cryptography", "lxml": "lxml", "rich": "rich", "click": "click", "orjson": "orjson",
               "zstandard": "zstandard", "scapy": "scapy", "pyroute2": "pyroute2", "pyshark": "pyshark"}


def dist_name(req: str) -> str:
    for sep in "<>=![; ":
        req = req.split(sep)[0]
    return req.strip().lower()


def imports_of(path) -> list[tuple[str, bool]]:
    """(top-level module, at module level?) of every import in a Python file."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name.split(".")[0], id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.module.split(".")[0], id(node) in top))
    return out


def product_imports() -> dict[str, dict[str, bool]]:
    """{package: {imported module: imported at module level somewhere}} for analyzer, dissectors, replay."""
    out: dict[str, dict[str, bool]] = {}
    for pkg in ("analyzer", "dissectors", "replay"):
        seen: dict[str, bool] = {}
        for f in (ROOT / pkg).rglob("*.py"):
            for mod, toplevel in imports_of(f):
                seen[mod] = seen.get(mod, False) or toplevel
        out[pkg] = seen
    return out


def test_runtime_dependencies_are_what_the_analyzer_imports():
    runtime = {dist_name(r) for r in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"]
    used = product_imports()
    analysing = set(used["analyzer"]) | set(used["dissectors"])
    # every runtime dependency is imported by the analyzer or its dissectors …
    assert {IMPORT_NAME[d] for d in runtime} <= analysing
    # … and the replay's own dependencies are not runtime ones: they are the replay extra (and the tests')
    assert {dist_name(r) for r in extras["replay"]} == {"scapy", "pyroute2"}
    assert not runtime & {"scapy", "pyroute2", "pyshark"}
    assert {"scapy", "pyroute2", "pyshark"} <= {dist_name(r) for r in extras["test"]}
    # the analyzer never imports them; replay/ imports them only inside the functions that use them
    for mod in ("scapy", "pyroute2", "pyshark"):
        assert mod not in analysing
        assert not used["replay"].get(mod, False), f"replay/ imports {mod} at module level"
    assert "pyshark" not in used["replay"]


@pytest.mark.parametrize("missing", ["scapy", "pyroute2"])
def test_replay_names_the_extra_when_its_dependencies_are_missing(missing, tmp_path):
    code = (f"import sys; sys.modules[{missing!r}] = None; from analyzer.cli import main; "
            "sys.argv = ['acflow', 'replay', 'client', 'x.pcapng', '--gateway', 'https://vpn.example.test/']; main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    assert missing in p.stderr and "acflow[replay]" in p.stderr and "Traceback" not in p.stderr
    assert p.stdout == ""


def installed_copy(tmp_path):
    """acflow's packages laid out as pip installs them (site-packages: no pyproject.toml, no lab/ beside them)."""
    site = tmp_path / "site-packages"
    for pkg in ("analyzer", "dissectors", "replay"):
        shutil.copytree(ROOT / pkg, site / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return site


def run_installed(site, *args, cwd):
    code = f"import sys; sys.path.insert(0, {str(site)!r}); from analyzer.cli import main; sys.argv = " \
           f"['acflow', *{list(args)!r}]; main()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)


def test_no_output_goes_into_the_installation(tmp_path):
    site = installed_copy(tmp_path)
    d = sample("baseline")
    work = tmp_path / "work"
    work.mkdir()
    base = ["analyze", str(d / "capture.pcapng"), "--keylog", str(d / "keys.log")]
    for target in (site / "report.txt", site / "analyzer" / "report.txt"):
        p = run_installed(site, *base, "-o", str(target), cwd=work)
        assert p.returncode == 4 and "inside acflow's installation" in p.stderr, p.stderr
        assert not target.exists()
    p = run_installed(site, *base, "-o", str(work / "report.txt"), cwd=work)
    assert p.returncode == 0, p.stderr
    assert "Session s1" in (work / "report.txt").read_text()


def test_lab_output_defaults_to_the_current_directory_never_the_installation(tmp_path):
    # in a checkout, `acflow lab` writes to the current directory by default: run from inside the analyzer's own
    # package directory it refuses (before any lab work, no root needed) …
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "lab", "baseline"], capture_output=True, text=True,
                       cwd=ROOT / "analyzer", env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 4, p.stderr
    assert f"refusing to write lab output to {ROOT / 'analyzer'}" in p.stderr
    p = subprocess.run([sys.executable, "-m", "analyzer.cli", "lab", "--out", str(ROOT / "replay" / "x"), "baseline"],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 4 and "inside acflow's installation" in p.stderr, p.stderr
    # … while `python -m lab`, the checkout's own tool, still makes the committed samples/
    from lab.__main__ import DEFAULT_OUT

    assert DEFAULT_OUT == ROOT / "samples"


def test_make_demo_installs_only_acflow(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    venv = tmp_path / "venv"
    demo = subprocess.run(["make", "-n", "demo", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    assert "apt-get" not in demo and "dpkg" not in demo
    assert "pip install -q -e .\n" in demo and "[test" not in demo and "replay]" not in demo
    assert "acflow analyze samples/baseline/capture.pcapng" in demo
    test = subprocess.run(["make", "-n", "test", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    assert "apt-get install" in test and "'.[test,replay]'" in test and "pytest" in test
