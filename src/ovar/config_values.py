"""Command-line text read as a value of a configuration field's declared type.

``data.root=2024`` is the string ``"2024"`` because ``data.root`` is a string, while
``data.frames=16`` is the int 16: the schema decides, not what the text looks like.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union

_NONE = ("null", "none", "~", "")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def type_name(tp: Any) -> str:
    """``int``, ``str | None``, ``list[str]``: an annotation as a user reads it."""
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def parse_typed(raw: str, tp: Any) -> Any:
    """``raw`` read as a value of annotation ``tp`` (str, int, float, bool, None in an
    Optional, lists and tuples as ``a,b`` or ``[a, b]``); ValueError saying what was expected."""
    text = raw.strip()
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and text.lower() in _NONE:
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return parse_typed(raw, arg)
                except ValueError:
                    pass
        raise ValueError(f"expected {type_name(tp)}, got {raw!r}")
    if origin in (list, tuple):
        inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        items = [item for item in inner.split(",")] if inner.strip() else []
        args = typing.get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(items)
        if origin is tuple:
            if len(items) != len(args):
                raise ValueError(f"expected a list of {len(args)} values, got {raw!r}")
            return tuple(parse_typed(item, arg) for item, arg in zip(items, args))
        return [parse_typed(item, args[0] if args else str) for item in items]
    if tp is str:
        # Quotes only keep surrounding spaces; they are not part of the value.
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            return text[1:-1]
        return text
    if tp is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
    elif tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            pass
    else:
        raise ValueError(f"values of type {type_name(tp)} cannot be given as text")
    raise ValueError(f"expected {type_name(tp)}, got {raw!r}")
