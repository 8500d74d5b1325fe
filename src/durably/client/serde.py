"""Turning Python values into request bodies and response bodies into typed values.

JSON is the default both ways. ``bytes`` travel raw (for handlers with a non-JSON content
type). ``output=`` names the type the caller wants back:

* with pydantic installed (the ``client`` extra), any type pydantic's ``TypeAdapter``
  understands is validated: models, dataclasses, TypedDicts, ``list[int]``, unions...;
* without pydantic, plain JSON types (``str``, ``int``, ``float``, ``bool``, ``dict``,
  ``list``, ``None``) are checked with ``isinstance``, dataclasses are built from the JSON
  object field by field (nested dataclasses too), and TypedDicts are checked to be objects.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, Final

from durably.client.errors import OutputError

try:  # optional: the `client` extra
    import pydantic
    import pydantic_core

    HAVE_PYDANTIC = True
except ImportError:  # pragma: no cover - exercised only without pydantic
    HAVE_PYDANTIC = False

__all__ = ["NO_INPUT", "JSON_CONTENT_TYPE", "OutputError", "decode", "encode"]

JSON_CONTENT_TYPE: Final = "application/json"
BYTES_CONTENT_TYPE: Final = "application/octet-stream"


class _NoInput:
    """Marks "send no body at all", which differs from sending JSON ``null``: Restate
    rejects any body or content type for a handler that takes no input."""

    _instance: _NoInput | None = None

    def __new__(cls) -> _NoInput:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_INPUT"

    def __bool__(self) -> bool:
        return False


NO_INPUT: Final = _NoInput()


def encode(value: Any, content_type: str | None = None) -> tuple[bytes | None, str | None]:
    """The body and content type for an input value (``(None, None)`` for ``NO_INPUT``)."""
    if value is NO_INPUT:
        return None, None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), content_type or BYTES_CONTENT_TYPE
    return _dump_json(value), content_type or JSON_CONTENT_TYPE


def _dump_json(value: Any) -> bytes:
    if HAVE_PYDANTIC:
        # to_json knows models, dataclasses, TypedDicts, datetimes, UUIDs, enums, sets...
        return pydantic_core.to_json(value)
    return json.dumps(_jsonable(value), separators=(",", ":"), ensure_ascii=False).encode()


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON_CONTENT_TYPE or media.endswith("+json")


def decode(body: bytes, content_type: str | None, output: Any = None) -> Any:
    """Decode a successful response body into ``output`` (any JSON value when ``None``).

    An empty body is ``None`` (a handler that returns nothing). A non-JSON content type
    gives ``bytes`` unless ``output`` says ``str``.
    """
    if output is bytes:
        return body
    if not body:
        return None if output is None else _validate_python(None, output)
    if not _is_json(content_type) and content_type is not None:
        if output is None:
            return body
        if output is str:
            return body.decode("utf-8")
    if output is None or output is Any:
        try:
            return json.loads(body)
        except ValueError as e:
            raise OutputError(f"response body is not valid JSON: {e}") from None
    adapter = _adapter(output)
    if adapter is not None:
        try:
            return adapter.validate_json(body)
        except pydantic.ValidationError as e:
            raise OutputError(str(e)) from None
    try:
        data = json.loads(body)
    except ValueError as e:
        raise OutputError(f"response body is not valid JSON: {e}") from None
    return _convert(data, output)


def _validate_python(value: Any, output: Any) -> Any:
    adapter = _adapter(output)
    if adapter is not None:
        try:
            return adapter.validate_python(value)
        except pydantic.ValidationError as e:
            raise OutputError(str(e)) from None
    return _convert(value, output)


@functools.lru_cache(maxsize=256)
def _adapter_cached(output: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(output)


def _adapter(output: Any) -> pydantic.TypeAdapter[Any] | None:
    """pydantic's validator for ``output``; ``None`` without pydantic, or for a type pydantic
    refuses (``typing.TypedDict`` before Python 3.12), which the plain converter handles."""
    if not HAVE_PYDANTIC:
        return None
    try:
        try:
            return _adapter_cached(output)
        except TypeError:  # unhashable type expression: build one each time
            return pydantic.TypeAdapter(output)
    except pydantic.PydanticUserError:
        return None


# --- without pydantic: a small, strict converter for the common cases -----------------

_PLAIN: Final[dict[Any, tuple[type, ...]]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
    dict: (dict,),
    list: (list,),
}


def _convert(data: Any, output: Any) -> Any:
    if output is None or output is type(None):
        if data is not None:
            raise OutputError(f"expected null, got {data!r}")
        return None
    if output is Any or output is object:
        return data
    origin = typing.get_origin(output)
    if origin is typing.Union or origin is types.UnionType:
        for arm in typing.get_args(output):
            try:
                return _convert(data, arm)
            except OutputError:
                continue
        raise OutputError(f"{data!r} matches none of {output!r}")
    if origin in (list, dict):
        return _convert(data, origin)
    if output in _PLAIN:
        if isinstance(data, bool) and output in (int, float):
            raise OutputError(f"expected {output.__name__}, got a boolean")
        if not isinstance(data, _PLAIN[output]):
            raise OutputError(f"expected {output.__name__}, got {type(data).__name__}")
        return float(data) if isinstance(data, int | float) and output is float else data
    if isinstance(output, type) and dataclasses.is_dataclass(output):
        if not isinstance(data, dict):
            raise OutputError(f"expected an object for {output.__name__}, got {data!r}")
        hints = typing.get_type_hints(output)
        kwargs = {
            f.name: _convert(data[f.name], hints.get(f.name, Any))
            for f in dataclasses.fields(output)
            if f.name in data
        }
        try:
            return output(**kwargs)
        except TypeError as e:
            raise OutputError(f"cannot build {output.__name__}: {e}") from None
    if typing.is_typeddict(output):
        if not isinstance(data, dict):
            raise OutputError(f"expected an object for {output.__name__}, got {data!r}")
        return data
    raise OutputError(
        f"cannot validate output type {output!r} without pydantic; "
        "install durably[client] or pass a plain JSON type or a dataclass"
    )
