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
import reprlib
from typing import Any

from ..model import PLAIN_TYPES, Redactable, reveal


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


def _names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def record(cls):
    """``@dataclass`` for a `Record` subclass, less the ``__eq__`` and ``__repr__`` it would generate: the class
    uses Record's, which do what dataclasses' do from the field list (generating two functions per class is most
    of what creating it costs, and ~50 classes are created at every start)."""
    return dataclasses.dataclass(eq=False, repr=False)(cls)


class Record:
    """Base of the typed details records (each subclass is a dataclass, made by `record`)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        # a dataclass's __eq__: the fields in order, between instances of the same class only
        if other.__class__ is not self.__class__:
            return NotImplemented
        names = _names(self.__class__)
        return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)

    __hash__ = None  # type: ignore[assignment]  # (mutable, compared by value: as a dataclass with eq)

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in _names(self.__class__))
        return f"{self.__class__.__qualname__}({fields})"

    def to_json(self, show_secrets: bool = False) -> dict:
        out = {}
        for name in _names(type(self)):
            v = getattr(self, name)
            if type(v) in PLAIN_TYPES:  # (reveal gives these as they are)
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
