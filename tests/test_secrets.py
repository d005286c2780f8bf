"""No secret of a sample reaches any output of ``acflow analyze`` unless ``--show-secrets``.

For every sample (``samples/*/`` and ``samples/scripted/*/``) the secrets are collected from the peers' own logs
and files — never from acflow:

* passwords: ``<password>`` values of the XML openconnect dumped (client.log), and the lab password;
* webvpn cookies and session tokens: ``Cookie:``/``Set-Cookie:`` ``webvpn``/``webvpncontext`` values and
  ``<session-token>`` in client.log, gateway.log, client-auth.log, the scripted gateway's events (``<elided>`` and
  template values skipped);
* DTLS master secrets: ``X-DTLS-Master-Secret`` of facts.json ``connects[].request_headers``;
* every secret of keys.log (the hex of each line's secret field), and what acflow derives from them (DTLS PSKs,
  TLS master secrets from the RSA key) — taken from the pipeline after the analysis.

Every output is checked: terminal, ``--verbose`` terminal, JSON, HTML, the ``--export-inner`` pcapng (its
comments), and stderr of each. With ``--show-secrets`` the password and the DTLS master secret do appear (the
check can fail). Error paths — a broken key log, a key log or RSA key given as the capture, a broken RSA key —
never echo a secret either.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
LAB_PASSWORD = "acflow-pass-1"
_LOGS = ("client.log", "gateway.log", "client-auth.log", "gateway-events.jsonl", "curl.log")


def sample_dirs() -> list[Path]:
    return sorted(p.parent for p in SAMPLES.glob("**/capture.pcapng") if (p.parent / "keys.log").exists())


def _log_text(d: Path) -> str:
    return "\n".join((d / n).read_text(errors="replace") for n in _LOGS if (d / n).exists())


def _usable(v: str) -> bool:
    v = v.strip()
    return len(v) >= 8 and "elided" not in v and "${" not in v and v != "«redacted»"


@functools.cache
def secrets_of(d: Path) -> dict[str, frozenset[str]]:
    """The sample's secrets, by kind, from its own files (see the module docstring)."""
    text = _log_text(d)
    out: dict[str, set[str]] = {"password": set(), "cookie": set(), "token": set(), "dtls_master": set(),
                                "keylog": set(), "derived": set()}
    out["password"] |= {m for m in re.findall(r"<password>([^<]+)</password>", text) if _usable(m)}
    if LAB_PASSWORD in text:
        out["password"].add(LAB_PASSWORD)
    out["cookie"] |= {m for m in re.findall(r"(?:Set-)?Cookie:\s*webvpn(?:context)?=([^;\s\"]+)", text, re.IGNORECASE)
                      if _usable(m)}
    out["cookie"] |= {m for m in re.findall(r"webvpn=([^;\s\"\\<]+)", text) if _usable(m)}
    out["token"] |= {m for m in re.findall(r"<session-token>([^<]+)</session-token>", text) if _usable(m)}
    facts = json.loads((d / "facts.json").read_text())
    for c in facts.get("connects") or []:
        for k, v in c.get("request_headers") or []:
            if k.lower() == "x-dtls-master-secret" and _usable(v):
                out["dtls_master"].add(v)
    for line in (d / "keys.log").read_text().splitlines():
        f = line.split()
        if len(f) == 3 and not line.startswith("#"):
            out["keylog"].add(f[2].split(":", 1)[-1])
    out["derived"] = _derived(d) - out["keylog"]
    return {k: frozenset(v) for k, v in out.items()}


def _derived(d: Path) -> set[str]:
    """Secrets acflow learns while analysing: DTLS PSKs/master secrets and key store additions."""
    from analyzer.analyze import analyze_paths, load_keys

    keys, info = load_keys([d / "keys.log"], [d / "server-key.pem"] if (d / "server-key.pem").exists() else [])
    found: set[str] = set()

    def grab(pipe):
        for e in pipe.keys.entries():
            found.add(e.secret.hex())
        for i in pipe.dtls_keys.values():
            for s in (i.psk, i.master_secret):
                if s:
                    found.add(s.hex())

    analyze_paths([d / "capture.pcapng"], keys, info, on_pipeline=grab)
    return found


def _variants(secret: str) -> set[str]:
    out = {secret}
    if re.fullmatch(r"[0-9a-fA-F]+", secret):
        out |= {secret.lower(), secret.upper()}
    return out


def leaks(text: str, secrets: dict[str, frozenset[str]]) -> list[str]:
    low = text
    return [f"{kind}: {s[:10]}…" for kind, values in secrets.items() for s in values
            if any(v in low for v in _variants(s))]


def _runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click 8.1: keep stderr apart
    except TypeError:  # click >= 8.2: always apart
        return CliRunner()


def run_cli(args) -> tuple[int, str, str]:
    result = _runner().invoke(cli_main, [str(a) for a in args], catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _base_args(d: Path) -> list:
    args = ["analyze", d / "capture.pcapng", "--keylog", d / "keys.log"]
    if (d / "server-key.pem").exists():
        args += ["--rsa-key", d / "server-key.pem"]
    return args


MODES = {
    "terminal": [],
    "terminal-verbose": ["--verbose"],
    "json": ["--format", "json"],
    "json-verbose": ["--format", "json", "--verbose"],
    "html": ["--format", "html"],
}


def test_secrets_are_found():
    """The collection works: the lab password, cookies, legacy master secrets and key log secrets are known."""
    allsec = {d.name: secrets_of(d) for d in sample_dirs()}
    assert LAB_PASSWORD in allsec["baseline"]["password"]
    assert allsec["baseline"]["cookie"] and allsec["baseline"]["keylog"]
    assert allsec["legacy-dtls"]["dtls_master"]
    assert allsec["baseline"]["derived"], "the DTLS PSK derived from the exporter"
    assert any(s["token"] for s in allsec.values()), "the scripted cases carry session tokens"


@pytest.mark.parametrize("sample", sample_dirs(), ids=lambda p: str(p.relative_to(SAMPLES)))
def test_no_secret_in_any_output(sample, tmp_path):
    secrets = secrets_of(sample)
    for mode, extra in MODES.items():
        rc, out, err = run_cli(_base_args(sample) + extra)
        assert rc == 0, (mode, err)
        assert not leaks(out, secrets), f"{mode} stdout leaks {leaks(out, secrets)}"
        assert not leaks(err, secrets), f"{mode} stderr leaks {leaks(err, secrets)}"
    # -o and --export-inner: the files written (the inner pcapng has per-packet comments)
    report, inner = tmp_path / "report.html", tmp_path / "inner.pcapng"
    rc, out, err = run_cli(_base_args(sample) + ["--verbose", "-o", report, "--export-inner", inner, "--format",
                                                 "html"])
    assert rc == 0, err
    for name, text in (("-o report", report.read_text()), ("--export-inner", inner.read_bytes().decode("latin-1")),
                       ("stdout", out), ("stderr", err)):
        assert not leaks(text, secrets), f"{name} leaks {leaks(text, secrets)}"


@pytest.mark.parametrize("sample", ["baseline", "legacy-dtls", "auth-fail", "tls12-rsa", "scripted/dtls-mtu-differs"])
def test_show_secrets_shows_them(sample):
    """With --show-secrets the password (and the legacy DTLS master secret) are in the report: the checks above
    would see a leak."""
    d = SAMPLES / sample
    secrets = secrets_of(d)
    rc, verbose, _ = run_cli(_base_args(d) + ["--verbose", "--show-secrets"])
    rc2, js, _ = run_cli(_base_args(d) + ["--format", "json", "--show-secrets"])
    assert rc == rc2 == 0
    for text in (verbose, js):
        if secrets["password"]:
            assert any(p in text for p in secrets["password"]), "password not shown with --show-secrets"
        for ms in secrets["dtls_master"]:
            assert ms in text or ms.lower() in text
        assert leaks(text, secrets)


# --- error paths ------------------------------------------------------------------------------------------

def _keylog_secrets(d: Path) -> dict[str, frozenset[str]]:
    return {"keylog": secrets_of(d)["keylog"]}


def _broken_keylogs(d: Path) -> dict[str, str]:
    lines = [ln for ln in (d / "keys.log").read_text().splitlines() if ln and not ln.startswith("#")]
    shifted = []
    for ln in lines:
        f = ln.split()
        shifted.append(f"{f[2]} {f[1]} {f[0]}")  # the secret where the label should be
    return {
        "secret-as-label": "\n".join(shifted),
        "label-missing": "\n".join(" ".join(ln.split()[1:]) for ln in lines),
        "secret-cut": "\n".join(ln[:-3] for ln in lines),
        "lines-joined": "".join(lines),
        "extra-field": "\n".join(ln + " " + ln.split()[2] for ln in lines),
        "wrong-label": "\n".join("X" + ln for ln in lines),
        "binary": "\x00\xff".join(lines),
    }


@pytest.mark.parametrize("kind", list(_broken_keylogs(SAMPLES / "baseline")))
@pytest.mark.parametrize("fmt", ["terminal", "json"])
def test_broken_keylog_errors_do_not_echo_secrets(kind, fmt, tmp_path):
    d = SAMPLES / "baseline"
    bad = tmp_path / "broken.keys"
    bad.write_text(_broken_keylogs(d)[kind])
    rc, out, err = run_cli(["analyze", d / "capture.pcapng", "--keylog", bad, "--format", fmt])
    assert rc == 0, err
    secrets = _keylog_secrets(d)
    assert not leaks(out + err, secrets), leaks(out + err, secrets)
    doc_errors = json.loads(out)["captures"][0]["keys"]["keylog_errors"] if fmt == "json" else None
    if doc_errors is not None:
        assert doc_errors, "the broken lines are reported (without their secrets)"


def test_keylog_parser_never_names_a_secret_as_label():
    """Regression (dissectors/keylog.py): a line whose fields are shifted used to be reported as
    "unknown label '<first 40 hex digits of the secret>'"."""
    from dissectors.keylog import parse_keylog

    secret = "ab" * 48
    _entries, errors = parse_keylog(f"{secret} {'11' * 32} CLIENT_RANDOM\nBOGUS_LABEL {'11' * 32} {'22' * 48}\n"
                                    f"{secret.upper()} x y\nNOT-A-LABEL! x y\n{secret}CLIENT_RANDOM x y\n"
                                    f"CLIENT_RANDOM{secret} x y\nCLIENT_RANDOM{secret.upper()} x y")
    assert len(errors) == 7
    assert "abababab" not in "".join(errors).lower()
    assert "unknown label 'BOGUS_LABEL'" in errors[1]  # a label-like token is still named
    assert all(e.startswith(f"line {i}:") for i, e in enumerate(errors, 1))


def test_key_files_given_as_capture_are_not_echoed(tmp_path):
    d = SAMPLES / "baseline"
    secrets = _keylog_secrets(d)
    lines = (d / "keys.log").read_text().splitlines()
    variants = {
        "keys.log": (d / "keys.log").read_text(),
        "traffic-secret-first": "\n".join(sorted(lines, key=lambda ln: not ln.startswith("SERVER_TRAFFIC"))),
        "secret-first": "\n".join(ln.split()[2] + " " + ln.split()[0] for ln in lines if len(ln.split()) == 3),
        "blank-line-first": "\n\n" + (d / "keys.log").read_text(),
    }
    for name, text in variants.items():
        p = tmp_path / f"{name}.pcapng"
        p.write_text(text)
        rc, out, err = run_cli(["analyze", p, "--keylog", d / "keys.log"])
        assert rc == 4, (name, err)
        assert not leaks(out + err, secrets), (name, err)
    # an RSA private key given as the capture, and a broken RSA key given as the key
    key = SAMPLES / "tls12-rsa" / "server-key.pem"
    body = "".join(key.read_text().splitlines()[1:-1])
    for args in (["analyze", key], ["analyze", SAMPLES / "tls12-rsa" / "capture.pcapng", "--rsa-key",
                                    _broken_key(key, tmp_path)]):
        rc, out, err = run_cli(args)
        assert rc == 4
        for i in range(8, len(body) - 16, 16):
            assert body[i:i + 16] not in out + err, "a piece of the private key was printed"


def _broken_key(key: Path, tmp_path: Path) -> Path:
    lines = key.read_text().splitlines()
    lines[3] = lines[3][:20] + "!!!!" + lines[3][24:]
    p = tmp_path / "broken-key.pem"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_real_process_stderr_and_stdout(tmp_path):
    """The same checks through a real process (what a user runs), on the sample with the most kinds of secret."""
    import subprocess
    import sys

    d = SAMPLES / "legacy-dtls"
    secrets = secrets_of(d)
    for extra in ([], ["--verbose"], ["--format", "json"]):
        p = subprocess.run([sys.executable, "-m", "analyzer.cli", *map(str, _base_args(d) + extra)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120, check=False)
        assert p.returncode == 0, p.stderr
        assert not leaks(p.stdout + p.stderr, secrets)


@pytest.mark.parametrize("sample", ["baseline", "auth-fail", "scripted/login-retry"])
def test_verbose_shows_the_username_not_the_password(sample):
    """A username is not a secret (README: passwords, tokens, cookies, master secrets are): `--verbose` shows the
    `<username>` the client sent, as the client's own log has it, while every password stays redacted."""
    d = SAMPLES / sample
    names = set(re.findall(r"<username>([^<]+)</username>", _log_text(d)))
    assert names, "the client's log has the username it sent"
    for extra in (["--verbose"], ["--format", "json", "--verbose"]):
        rc, out, _err = run_cli(_base_args(d) + extra)
        assert rc == 0
        out = out.replace("\\u00ab", "«").replace("\\u00bb", "»")  # JSON escapes the guillemets
        for name in names:
            assert f"<username>{name}</username>" in out
        assert "<username>«redacted»</username>" not in out
        assert not leaks(out, secrets_of(d)), leaks(out, secrets_of(d))
        assert "<password>«redacted»</password>" in out
