"""The one cattrs converter assetry uses (never cattrs' global one).

It is strict: a string is not an int, a bool is not an int, a number is not a string. Structuring errors
become `ValidationError` (or `ConfigError`) naming the dotted path of the offending key.
"""

from __future__ import annotations

import enum
import numbers
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from assetry.errors import ValidationError

T = TypeVar("T")


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__} {value!r}")
    return value


def _strict_float(value: Any, _: type) -> float:
    if type(value) is float:  # most values, first: the abstract-class check below takes ~1 µs each
        return value
    # numbers.Real, not just int and float: numpy's float32, what embedding models return, is one.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"expected a number, got {type(value).__name__} {value!r}")
    return float(value)


def _strict_str(value: Any, cls: type) -> Any:
    # Registered for str, this hook also receives str subclasses, which include str enums (Kind,
    # Status): those must become members, not stay the strings given.
    if cls is not str and issubclass(cls, enum.Enum):
        return _enum(value, cls)
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")
    return _unicode(value)


def is_unicode(text: str) -> bool:
    """Whether text can be stored as UTF-8. Undecodable bytes (a command-line argument or file name that
    is not UTF-8) arrive as lone surrogates, which cannot: they are refused before any blob is written,
    not by the catalog after."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unicode(value: str) -> str:
    if not is_unicode(value):
        raise TypeError(f"{value!r:.60} is not valid Unicode (undecodable bytes?)")
    return value


def _strict_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__} {value!r}")
    return value


def _datetime(value: Any, _: type) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise TypeError(f"{value!r} is not an ISO 8601 date/time") from None
    else:
        raise TypeError(f"expected a date/time, got {type(value).__name__}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _enum(value: Any, cls: type[enum.Enum]) -> enum.Enum:
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(str(m.value) for m in cls)
        raise TypeError(f"{value!r} is not one of: {choices}") from None


def _is_optional_enum(t: Any) -> bool:
    args = typing.get_args(t)
    return (
        typing.get_origin(t) in (typing.Union, types.UnionType)
        and len(args) == 2
        and type(None) in args
        and any(isinstance(a, type) and issubclass(a, enum.Enum) for a in args)
    )


def _optional_enum(value: Any, t: Any) -> enum.Enum | None:
    if value is None:
        return None
    cls = next(a for a in typing.get_args(t) if a is not type(None))
    return _enum(value, cls)


_PRIMITIVES = (str, int, float, bool, type(None))


def _is_primitive_union(t: Any) -> bool:
    args = typing.get_args(t)
    return typing.get_origin(t) in (typing.Union, types.UnionType) and all(a in _PRIMITIVES for a in args)


def _primitive_union(value: Any, t: Any) -> Any:
    allowed = typing.get_args(t)
    # bool is an int subclass; only accept it where bool itself is allowed.
    if type(value) in allowed or (
        isinstance(value, int) and not isinstance(value, bool) and float in allowed
    ):
        return _unicode(value) if isinstance(value, str) else value
    names = " or ".join("null" if a is type(None) else a.__name__ for a in allowed)
    raise TypeError(f"expected {names}, got {type(value).__name__} {value!r}")


def _mapping(value: Any, _: type) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a table/mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"keys must be strings, got {key!r}")
    return dict(value)


def _float_tuple(value: Any, _: type) -> tuple[float, ...]:
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise TypeError(f"expected a sequence of numbers, got {type(value).__name__}")
    return tuple(_strict_float(v, float) for v in value)


def _str_tuple(value: Any, _: type) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise TypeError(f"expected a list of strings, got {type(value).__name__}")
    return tuple(_strict_str(v, str) for v in value)


def _is_enum_tuple(t: Any) -> bool:
    args = typing.get_args(t)
    return (
        typing.get_origin(t) is tuple
        and len(args) == 2
        and args[1] is Ellipsis
        and isinstance(args[0], type)
        and issubclass(args[0], enum.Enum)
    )


def _enum_tuple(value: Any, t: Any) -> tuple[enum.Enum, ...]:
    cls = typing.get_args(t)[0]
    if isinstance(value, (str, cls)):
        return (_enum(value, cls),)
    if isinstance(value, (bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise TypeError(f"expected a value or a list of values, got {type(value).__name__} {value!r:.60}")
    return tuple(_enum(v, cls) for v in value)


def _equals(target: Any) -> Any:
    return lambda t: t == target


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(datetime, _datetime)
    conv.register_unstructure_hook(datetime, lambda d: d.isoformat())
    conv.register_structure_hook_func(lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _enum)
    conv.register_structure_hook_func(_is_optional_enum, _optional_enum)
    conv.register_structure_hook_func(_is_primitive_union, _primitive_union)
    conv.register_structure_hook_func(_is_enum_tuple, _enum_tuple)
    # Generic aliases are not classes, so these dispatch on equality rather than by type.
    for generic, hook in (
        (Mapping[str, Any], _mapping),
        (dict[str, Any], _mapping),
        (tuple[float, ...], _float_tuple),
        (tuple[str, ...], _str_tuple),
    ):
        conv.register_structure_hook_func(_equals(generic), hook)
    conv.register_unstructure_hook_func(lambda t: t == Mapping[str, Any], dict)
    return conv


converter = _make_converter()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return exc.reason
    if isinstance(exc, KeyError):
        return "is required"
    return str(exc) or type(exc).__name__


def first_error(exc: BaseException, prefix: str = "") -> tuple[str | None, str]:
    """Walk a cattrs exception group down to the first leaf; return (dotted path, reason)."""
    if isinstance(exc, ForbiddenExtraKeysError):
        keys = sorted(exc.extra_fields)
        path = ".".join(p for p in (prefix, keys[0]) if p)
        return path, "unknown key" + (f" (also unknown: {', '.join(keys[1:])})" if len(keys) > 1 else "")
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for inner, note in with_notes:
            return first_error(inner, ".".join(p for p in (prefix, note.name) if p))
        for inner in without:
            return first_error(inner, prefix)
    if isinstance(exc, IterableValidationError):
        indexed, unindexed = exc.group_exceptions()
        for inner, index_note in indexed:
            return first_error(inner, f"{prefix}[{index_note.index}]")
        for inner in unindexed:
            return first_error(inner, prefix)
    if isinstance(exc, ValidationError) and exc.field:
        # attrs validators name the attribute; qualify it with where the class sits.
        return ".".join(p for p in (prefix, exc.field) if p), exc.reason
    if isinstance(exc, BaseExceptionGroup):
        return first_error(exc.exceptions[0], prefix)
    return prefix or None, _describe(exc)


def structure(
    data: Any, cls: type[T], *, error: type[ValidationError] = ValidationError, prefix: str = ""
) -> T:
    """Structure ``data`` into ``cls``; any failure raises ``error`` naming the offending key."""
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, ValidationError, TypeError, ValueError, KeyError) as exc:
        field, reason = first_error(exc, prefix)
        raise error(field, reason) from None


def unstructure(obj: Any) -> Any:
    return converter.unstructure(obj)


def evolve(obj: T, **changes: Any) -> T:
    """`attrs.evolve` whose validation errors name the field (validators already do)."""
    return attrs.evolve(obj, **changes)  # type: ignore[misc]
