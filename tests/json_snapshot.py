"""Write the JSON document of every sample, four ways, into a directory (the JSON contract check of the typed
session model, tests/test_typed_model.py).

    python tests/json_snapshot.py OUTDIR [SAMPLES_ROOT]

Runs with whatever `analyzer` is first on sys.path: the test runs it from a checkout of an older commit to get
the documents of the code before a change. For each samples/**/capture.pcapng: with the sample's key log (and the
gateway's RSA key for tls12-rsa*) and without, each with secrets shown and redacted; one file per document.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def variants(samples_root: Path):
    for cap in sorted(samples_root.rglob("capture.pcapng")):
        d = cap.parent
        name = str(d.relative_to(samples_root)).replace("/", "__")
        for with_keys in (True, False):
            for show in (True, False):
                yield d, name + f"--keys-{int(with_keys)}--secrets-{int(show)}.json", with_keys, show


def document(d: Path, with_keys: bool, show: bool) -> str:
    from analyzer.analyze import analyze_paths, load_keys
    from analyzer.report.json_report import render_json

    keylog = d / "keys.log"
    rsa = d / "server-key.pem"
    keys, info = load_keys([keylog] if with_keys and keylog.exists() else [],
                           [rsa] if with_keys and d.name.startswith("tls12-rsa") and rsa.exists() else [])
    analysis = analyze_paths([d / "capture.pcapng"], keys, info)
    text = render_json(analysis, version="snapshot", show_secrets=show)
    doc = json.loads(text)
    for c in doc.get("captures", []):
        c.pop("analysis_seconds", None)
    return json.dumps(doc, indent=1) + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[1])
    root = Path(argv[2]) if len(argv) > 2 else Path("samples")
    out.mkdir(parents=True, exist_ok=True)
    for d, fname, with_keys, show in variants(root):
        (out / fname).write_text(document(d, with_keys, show), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
