"""Fast construction of the per-packet / per-record events (frozen slots dataclasses).

A frozen dataclass assigns each field through ``object.__setattr__``, several times slower than a plain slot
store, and the hot events (Frame, StreamData, Datagram, ApplicationData, CSTPFrame) are built once per packet or
record. ``fast_constructor(cls)`` returns a function taking the fields positionally, in declaration order, that
fills an instance of a plain class with the same ``__slots__`` and then relabels it as ``cls`` (CPython allows
``__class__`` assignment between classes with identical slot layouts). The result is an ordinary, immutable
instance of ``cls``. Where the relabelling is not supported, ``cls`` itself is returned.
"""
from __future__ import annotations

import dataclasses

__all__ = ["fast_constructor"]


def fast_constructor(cls):
    names = tuple(f.name for f in dataclasses.fields(cls))
    if tuple(cls.__slots__) != names or not all(n.isidentifier() for n in names):
        return cls
    builder = type(f"_{cls.__name__}Builder", (), {"__slots__": names})
    params = ", ".join(names)
    stores = "".join(f"    o.{n} = {n}\n" for n in names)
    # generated from the field names only (identifiers, checked above), as dataclasses does for __init__
    src = f"def make({params}):\n    o = new(B)\n{stores}    o.__class__ = C\n    return o\n"
    namespace = {"new": object.__new__, "B": builder, "C": cls}
    exec(src, namespace)  # noqa: S102
    make = namespace["make"]
    make.__name__ = make.__qualname__ = f"new_{cls.__name__}"
    try:
        make(*([None] * len(names)))
    except TypeError:  # pragma: no cover - an interpreter without __class__ assignment between these
        return cls
    return make
