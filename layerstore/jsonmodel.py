"""A small codec between frozen dataclasses and JSON objects.

Each model field names its JSON key in ``field(metadata={"key": ...})``. Unknown keys are kept
in the ``extra`` field so that parsing and re-encoding a document loses nothing. Decoding
validates types and raises :class:`InvalidArgument` with the path of the bad field.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, Field, field, fields
from typing import Any, ClassVar, Self

from layerstore.digest import Digest
from layerstore.errors import InvalidArgument, LayerstoreError


def key(name: str, *, always: bool = False, default: Any = None, required: bool = False) -> Any:
    """A dataclass field stored under JSON key ``name``.

    ``always`` emits the field even when it is empty (a ``None`` value is always omitted);
    ``required`` makes it a field without default that a decoded document must carry.
    """
    meta = {"key": name, "always": always or required}
    if required:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def canonical_json(value: Any) -> bytes:
    """Canonical encoding: sorted keys, no insignificant whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class JSONModel:
    """Mixin giving a frozen dataclass ``to_dict``/``from_dict``/``to_json``/``from_json``."""

    extra: dict[str, Any]
    _hints: ClassVar[dict[type, dict[str, Any]]] = {}
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @classmethod
    def _field_types(cls) -> dict[str, Any]:
        cached = JSONModel._hints.get(cls)
        if cached is None:
            cached = typing.get_type_hints(cls)
            JSONModel._hints[cls] = cached
        return cached

    def to_dict(self) -> dict[str, Any]:
        """The JSON object for this value, unknown fields included."""
        out: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            if "key" not in f.metadata:
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if not f.metadata["always"] and isinstance(value, tuple | dict) and not value:
                continue
            out[f.metadata["key"]] = _encode(value)
        return out

    def to_json(self) -> bytes:
        """Canonical JSON bytes of :meth:`to_dict`."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Self:
        """Build from a decoded JSON object, validating every known field."""
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise InvalidArgument(f"{where}: expected a JSON object, got {_kind(data)}")
        hints = cls._field_types()
        kwargs: dict[str, Any] = {}
        known: set[str] = set()
        for f in fields(cls):
            if "key" not in f.metadata:
                continue
            k = f.metadata["key"]
            known.add(k)
            if k in data and data[k] is not None:
                kwargs[f.name] = _decode(hints[f.name], data[k], f"{where}.{k}")
            elif f.default is MISSING and f.default_factory is MISSING:
                raise InvalidArgument(f"{where}: missing required field {k!r}")
        kwargs["extra"] = {k: v for k, v in data.items() if k not in known}
        try:
            return cls(**kwargs)
        except LayerstoreError as exc:
            raise InvalidArgument(f"{where}: {exc}") from None

    @classmethod
    def from_json(cls, raw: bytes | str, where: str = "") -> Self:
        """Parse JSON text, raising InvalidArgument on bad JSON or bad fields."""
        where = where or cls.__name__
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"{where}: not valid JSON: {exc}") from None
        return cls.from_dict(data, where)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "a value")


def _encode(value: Any) -> Any:
    if isinstance(value, JSONModel):
        return value.to_dict()
    if isinstance(value, Digest):
        return str(value)
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _decode(args[0], value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise InvalidArgument(f"{where}: expected an array, got {_kind(value)}")
        item = typing.get_args(hint)[0]
        return tuple(_decode(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise InvalidArgument(f"{where}: expected an object, got {_kind(value)}")
        item = typing.get_args(hint)[1]
        return {k: _decode(item, v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is Digest:
        if not isinstance(value, str):
            raise InvalidArgument(f"{where}: expected a digest string, got {_kind(value)}")
        try:
            return Digest.parse(value)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc}") from None
    if isinstance(hint, type) and issubclass(hint, JSONModel):
        return hint.from_dict(value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise InvalidArgument(f"{where}: expected a boolean, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(f"{where}: expected an integer, got {_kind(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise InvalidArgument(f"{where}: expected a string, got {_kind(value)}")
        return value
    raise TypeError(f"no JSON codec for {hint!r}")
