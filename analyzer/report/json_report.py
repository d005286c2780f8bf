"""JSON renderer: the public, versioned document described in docs/json-schema.md (schema file:
docs/acflow-report.schema.json)."""
from __future__ import annotations

import json
import math


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, (set, frozenset)):
        return sorted(_clean(x) for x in v)
    if hasattr(v, "name") and hasattr(v, "value") and isinstance(v.value, int):  # IntEnum
        return v.name
    return v


def to_document(analysis, *, version: str, show_secrets: bool = False) -> dict:
    doc = analysis.to_json(version, show_secrets)
    for s in doc["sessions"]:
        s["tunnel"].pop("series", None)
    return _clean(doc)


def render_json(analysis, *, version: str, show_secrets: bool = False) -> str:
    return json.dumps(to_document(analysis, version=version, show_secrets=show_secrets), indent=2,
                      default=str) + "\n"
