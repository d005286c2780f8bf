"""The base of the typed session details: dataclasses whose JSON form is today's public document.

A `Record` is a dataclass; `to_json(show_secrets)` gives its JSON object with the keys in field order. A field
whose value is `UNSET` is left out of the object (a key the document has only in some cases: e.g. `opaque` in a
group-selection POST, only when the gateway's answer carried one). Values go through `analyzer.model.reveal`, so
`Secret` and `Redactable` values are redacted unless secrets are shown. The JSON schema of the details
(docs/acflow-report.schema.json) is generated from these classes (analyzer/schema.py): a field's type annotation
is its schema; `UNSET`-defaulted fields are the optional keys.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ..model import Redactable, reveal


class _Unset:
    """The value of a field whose key is absent from the JSON object."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def json_value(self, show_secrets: bool = False) -> None:
        return None  # a key that is absent reads as null when a reader copies it into a finding's evidence


UNSET: Any = _Unset()


class HeaderList(Redactable):
    """HTTP headers as `[[name, value], …]`, with a redacted copy (cookies, tokens)."""

    __slots__ = ()


class XMLText(Redactable):
    """An XML document (aggregate-auth, X-CSTP-Post-Auth-XML) as text, with a redacted copy."""

    __slots__ = ()


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # Record subclass -> its fields' names, in order


class Record:
    """Base of the typed details records (each subclass is a dataclass)."""

    __slots__ = ()

    def to_json(self, show_secrets: bool = False) -> dict:
        names = _FIELD_NAMES.get(type(self))
        if names is None:
            names = _FIELD_NAMES[type(self)] = tuple(f.name for f in dataclasses.fields(self))
        out = {}
        for name in names:
            v = getattr(self, name)
            t = type(v)
            if t is str or t is int or t is float or t is bool or v is None:  # (reveal gives these as they are)
                out[name] = v
            elif v is not UNSET:
                out[name] = reveal(v, show_secrets)
        return out

    def json_value(self, show_secrets: bool = False) -> dict:
        """The protocol `analyzer.model.reveal` uses for objects that know their JSON form."""
        return self.to_json(show_secrets)


def opt(v: Any) -> Any:
    """The value of an optional field, None when it is UNSET."""
    return None if v is UNSET else v
