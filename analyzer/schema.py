"""The typed part of the JSON schema (docs/acflow-report.schema.json), generated from the session model's dataclasses.

    python -m analyzer.schema            # rewrite docs/acflow-report.schema.json
    python -m analyzer.schema --check    # exit 1 if the committed file is not what the dataclasses give

The schema file is hand-written except what this module generates from analyzer/phases/: one `$defs` entry per
details record (named after its class), each phase's `details` (in the session's `phases` prefixItems: that
phase's details record, or an empty object for a phase without details), the session's `tunnel` and the items
of its `connections`. A record's schema is an object with its fields as properties; a field whose default is
`UNSET` (a key present only in some cases) is optional, every other field is required; no other property is
allowed. Types map as: int → integer, float → number, str and `Secret` → string, bool → boolean, `X | None` →
X or null, list → array, dict[str, X] → object of X, `Any` and untyped dicts → anything/object, `HeaderList` →
array of [name, value] pairs, `XMLText` → string, a record → `$ref` to its definition. A field's metadata
`description` becomes the property's description. `tests/test_json_schema.py` checks that the committed schema is
the generated one, and validates every sample's document against it.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from .model import PHASES, Secret
from .phases.cstp_connect import CSTPConnectDetails, CSTPUndecryptedDetails
from .phases.downloader import DownloaderDetails
from .phases.dtls import DTLSDetails
from .phases.group_selection import GroupSelectionDetails
from .phases.inferred import PhaseInference
from .phases.record import UNSET, HeaderList, Record, XMLText
from .phases.tls_handshake import (
    ConnectionSummary,
    DTLSConnectionSummary,
    FailedConnectSummary,
    TLSHandshakeDetails,
)
from .phases.tunnel import Tunnel
from .phases.user_auth import UserAuthDetails
from .verdict import SessionVerdict

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "acflow-report.schema.json"

#: the details record(s) of each phase, in PHASES order (a phase without details has an empty object)
PHASE_DETAILS: dict[str, tuple[type[Record], ...]] = {
    "tls-handshake": (TLSHandshakeDetails,),
    "group-selection": (GroupSelectionDetails,),
    "user-auth": (UserAuthDetails,),
    "downloader": (DownloaderDetails,),
    "cstp-connect": (CSTPConnectDetails, CSTPUndecryptedDetails),
    "dtls": (DTLSDetails,),
}
#: fields of the model that the JSON document does not carry (json_report drops them)
NOT_IN_DOCUMENT = {(Tunnel, "series")}

EMPTY = {"type": "object", "maxProperties": 0}
HEADERS = {"type": "array", "items": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "string"}],
                                      "minItems": 2, "maxItems": 2}}
_SIMPLE = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}


class _Builder:
    def __init__(self) -> None:
        self.defs: dict[str, dict] = {}

    def ref(self, cls: type[Record]) -> dict:
        name = cls.__name__
        if name not in self.defs:
            self.defs[name] = {}  # placeholder: recursion stops here
            self.defs[name] = self.record(cls)
        return {"$ref": f"#/$defs/{name}"}

    def record(self, cls: type[Record]) -> dict:
        hints = typing.get_type_hints(cls)
        props: dict[str, Any] = {}
        required = []
        for f in dataclasses.fields(cls):
            if (cls, f.name) in NOT_IN_DOCUMENT:
                continue
            sch = dict(self.type(hints[f.name]))
            if f.metadata.get("description"):
                sch["description"] = f.metadata["description"]
            props[f.name] = sch
            if f.default is not UNSET:
                required.append(f.name)
        out: dict[str, Any] = {"type": "object"}
        doc = (cls.__doc__ or "").strip()
        if doc and not doc.startswith(cls.__name__ + "("):  # dataclass's generated signature is no description
            out["description"] = " ".join(doc.split())
        out.update({"required": required, "properties": props, "additionalProperties": False})
        return out

    def type(self, t: Any) -> dict:
        if t is Any:
            return {}
        if isinstance(t, type) and issubclass(t, Record):
            return self.ref(t)
        if t is HeaderList:
            return HEADERS
        if t in (XMLText, Secret):
            return {"type": "string"}
        if t in _SIMPLE:
            return {"type": _SIMPLE[t]}
        origin, args = typing.get_origin(t), typing.get_args(t)
        if origin in (typing.Union, types.UnionType):
            parts = [self.type(a) for a in args]
            if all(set(p) == {"type"} for p in parts):
                names = []
                for p in parts:
                    names += p["type"] if isinstance(p["type"], list) else [p["type"]]
                return {"type": names}
            return {"anyOf": parts}
        if origin is list:
            return {"type": "array", "items": self.type(args[0])} if args else {"type": "array"}
        if origin is tuple:
            return {"type": "array"}
        if origin is dict or t is dict:
            if not args or args[1] is Any:
                return {"type": "object"}
            return {"type": "object", "additionalProperties": self.type(args[1])}
        raise TypeError(f"no JSON schema for the type {t!r}")


def generate(schema: dict) -> dict:
    """`schema` (the committed file) with its generated parts replaced by what the dataclasses give."""
    out = json.loads(json.dumps(schema))
    b = _Builder()
    session = out["$defs"]["session"]
    for item, name in zip(session["properties"]["phases"]["prefixItems"], PHASES, strict=True):
        variants = [b.ref(cls) for cls in PHASE_DETAILS[name]] + [EMPTY]
        item["properties"]["details"] = {"anyOf": variants}
        item["properties"]["inferred"] = b.ref(PhaseInference)  # without keys only (analyzer/phases/inferred.py)
    session["properties"]["tunnel"] = b.ref(Tunnel)
    session["properties"]["verdict"] = {"anyOf": [b.ref(SessionVerdict), {"type": "null"}],
                                        "description": "the session's one-line verdict (analyzer/verdict.py)"}
    session["properties"]["connections"] = {
        "type": "array", "items": {"anyOf": [b.ref(ConnectionSummary), b.ref(FailedConnectSummary),
                                                b.ref(DTLSConnectionSummary)]}}
    # the generated definitions after the hand-written ones, in a stable order; stale generated ones removed
    hand = {k: v for k, v in out["$defs"].items() if not _generated(v)}
    out["$defs"] = hand | {k: _mark(b.defs[k]) for k in sorted(b.defs)}
    return out


_MARK = "generated by python -m analyzer.schema from analyzer/phases/"


def _mark(d: dict) -> dict:
    return {"$comment": _MARK, **d}


def _generated(d: dict) -> bool:
    return isinstance(d, dict) and d.get("$comment") == _MARK


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not SCHEMA_PATH.exists():
        print(f"{SCHEMA_PATH} not found: run this from a source checkout (docs/ is not installed)", file=sys.stderr)
        return 2
    current = SCHEMA_PATH.read_text(encoding="utf-8")
    text = render(generate(json.loads(current)))
    if "--check" in args:
        if text != current:
            print(f"{SCHEMA_PATH} is not the generated schema: run python -m analyzer.schema", file=sys.stderr)
            return 1
        return 0
    if text != current:
        SCHEMA_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
