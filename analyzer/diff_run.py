"""`acflow diff BASELINE NEW`: the I/O edge. Reads each side (a capture analysed with its keys, or a JSON report of
`acflow analyze --format json`), diffs them (analyzer/diff.py), renders (analyzer/report/diff_report.py).

Exit codes: 0 the sessions are the same (nothing beyond tolerance differs), 1 something differs, 4 an input cannot
be used (unreadable, not a capture nor an acflow JSON report, unreadable key file).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import __version__
from .analyze import InputError, analyze_paths, load_keys
from .archive import ArchiveError, damage_errors, open_input, read_head, read_input
from .diff import diff_documents

EXIT_SAME = 0
EXIT_DIFFERS = 1
EXIT_INPUT = 4


def _looks_like_json(path: Path) -> bool:
    """A JSON document (an acflow report), by its first bytes: a file or an archive member, compressed or not."""
    try:
        with open_input(path) as (fh, _compression):
            head = read_head(fh, 64).lstrip()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from e
    except (ArchiveError, *damage_errors()) as e:
        raise InputError(f"cannot read {path}: {e}") from e
    return head.startswith(b"{")


def load_side(path: Path, keylogs, rsa_keys) -> dict:
    """The report document of one side: a JSON report as it is, or a capture analysed (secrets redacted)."""
    from .report.json_report import to_document  # noqa: PLC0415

    path = Path(path)
    if _looks_like_json(path):
        try:
            doc = json.loads(read_input(path, limit=1 << 32).decode("utf-8", errors="replace"))
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: not a readable JSON report ({e})") from e
        if not isinstance(doc, dict) or "sessions" not in doc or not isinstance(doc["sessions"], list):
            raise InputError(f"{path}: a JSON document, but not an acflow report (no \"sessions\" list); write one "
                             f"with `acflow analyze --format json`")
        return doc
    keys, info = load_keys(keylogs, rsa_keys)
    analysis = analyze_paths([path], keys, info)
    return to_document(analysis, version=__version__, show_secrets=False)


def run_diff(*, baseline, new, keylogs, keylogs_new, rsa_keys, ignore, fmt, output) -> int:
    from .report.diff_report import render_diff  # noqa: PLC0415

    try:
        a = load_side(baseline, keylogs, rsa_keys)
        b = load_side(new, keylogs_new if keylogs_new else keylogs, rsa_keys)
    except InputError as e:
        print(f"acflow diff: {e}", file=sys.stderr)
        return EXIT_INPUT
    result = diff_documents(a, b, ignore=ignore, base_name=str(baseline), new_name=str(new))
    text = render_diff(result, fmt, version=__version__, color=output is None and sys.stdout.isatty())
    if output is not None:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_DIFFERS if result.differs else EXIT_SAME
