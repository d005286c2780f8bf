"""No placeholder ever reaches a user: every sample and corpus capture, with and without keys, rendered.

Issue #12 item 9: reports said "the session's ClientHello is frame None", "cstp-connect (?)". A message, remedy
or phase summary that prints a missing value is a bug: it must say what is missing in words instead.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest

from analyzer import __version__
from analyzer.analyze import InputError, analyze_paths, load_keys
from analyzer.report import render

from .conftest import ROOT, SAMPLES

CORPUS = ROOT / "tests" / "corpus" / "generated"
PLACEHOLDER = re.compile(r"\bNone\b|\(\?\)|\bnan\b|\bnull\b|\?\s*ms\b|: \?(\W|$)|\{[a-z_]+\}|<[a-z_]+ object at")


def _captures() -> list[tuple[str, Path, list[Path], list[Path]]]:
    out = []
    for d in sorted(p.parent for p in SAMPLES.rglob("facts.json")):
        cap = d / "capture.pcapng"
        if not cap.exists():
            continue
        name = str(d.relative_to(SAMPLES))
        kl = [d / "keys.log"] if (d / "keys.log").exists() else []
        out.append((f"{name}+keys", cap, kl, []))
        out.append((f"{name}-nokeys", cap, [], []))
    manifest = json.loads((CORPUS / "MANIFEST.json").read_text())["files"]
    for e in manifest:
        if e["expect"] == "not-a-capture":
            continue

        def p(rel):
            return ROOT / rel if rel.startswith("samples/") else CORPUS / rel

        out.append((f"corpus:{e['file']}", CORPUS / e["file"], [p(e["keylog"])] if e.get("keylog") else [],
                    [p(e["rsa_key"])] if e.get("rsa_key") else []))
    return out


CAPTURES = _captures()


@functools.cache
def _analysis(name: str):
    _, cap, kl, rsa = next(c for c in CAPTURES if c[0] == name)
    keys, info = load_keys(kl, rsa)
    try:
        return analyze_paths([cap], keys, info)
    except InputError:
        return None


def _texts(analysis) -> list[tuple[str, str]]:
    """Every sentence acflow writes for a person: summaries, messages, remedies, and the terminal report."""
    out = []
    for s in analysis.sessions:
        for p in s.phases:
            out.append((f"{s.id} {p.phase} summary", p.summary))
        for f in s.findings:
            out.append((f"{s.id} {f.id} message", f.message))
            out.append((f"{s.id} {f.id} remedy", f.remedy))
        for e in s.evidence:
            out.append((f"{s.id} evidence", e["text"]))
    for f in analysis.findings:
        out += [(f"{f.id} message", f.message), (f"{f.id} remedy", f.remedy)]
    return out


@pytest.mark.parametrize("name", [c[0] for c in CAPTURES])
def test_no_placeholder_in_any_message(name):
    analysis = _analysis(name)
    if analysis is None:
        pytest.skip("not a capture acflow can read (exit 4 is tested in test_corpus)")
    bad = [(where, text) for where, text in _texts(analysis) if PLACEHOLDER.search(text or "")]
    assert not bad, bad[:5]
    terminal = render(analysis, "terminal", version=__version__)
    lines = [ln for ln in terminal.splitlines() if PLACEHOLDER.search(ln)]
    assert not lines, lines[:5]


def test_placeholder_pattern_catches_the_old_wording():
    for text in ("the session's ClientHello is frame None.", "Not decrypted: cstp-connect (?).",
                 "DTLS handshake ? ms"):
        assert PLACEHOLDER.search(text), text
    assert not PLACEHOLDER.search("the session's ClientHello is frame 8.")
