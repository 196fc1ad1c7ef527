"""Typed JSON records: a frozen dataclass (:class:`Record`) declares the keys of a file once, in the order written.

A record's fields are its keys, in order. A field whose value is :data:`ABSENT` is left out of the JSON (a key
that only some records carry, e.g. a fine-tuned cell's ``backbone_id``); ``None`` is written as null. A field
may name a JSON key that is not a Python name (``_file``) with ``field(metadata={"key": ...})``:
:func:`json_key`.
"""

from __future__ import annotations

from dataclasses import field, fields
from typing import Any


class _Absent:
    """The value of a field that the record leaves out (not the same as null)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __reduce__(self):  # one sentinel across processes (records built in worker processes)
        return (_Absent, ())


ABSENT: Any = _Absent()


def json_key(name: str, **kwargs):
    """A field written under the JSON key ``name`` (e.g. ``_file``)."""
    return field(metadata={"key": name}, **kwargs)


class Record:
    """Mixin of the record dataclasses: ``to_json()`` and the declared ``keys()``."""

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object: every field under its key, in declaration order, :data:`ABSENT` ones out.
        Values are the field values themselves (not copies)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not ABSENT:
                out[f.metadata.get("key", f.name)] = value
        return out

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Every key a record of this kind may carry, in the order written."""
        return tuple(f.metadata.get("key", f.name) for f in fields(cls))
