"""The recipe registry: built-in recipes by name, or a user's ``module:name``."""

from __future__ import annotations

from typing import Callable, TypeVar

from ..config import ConfigError
from ..train.recipe import Recipe

R = TypeVar("R", bound=type[Recipe])


_REGISTRY: dict[str, type[Recipe]] = {}


def register_recipe(name: str) -> Callable[[R], R]:
    """Class decorator adding a :class:`Recipe` subclass to the registry under ``name``."""

    def add(cls: R) -> R:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"recipe {name!r} is already registered ({existing.__qualname__})")
        _REGISTRY[name] = cls
        return cls

    return add


def get_recipe(name: str) -> type[Recipe]:
    """The recipe class registered as ``name``; ConfigError listing the known ones if none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ConfigError(f"unknown recipe {name!r} (known: {known})") from None


def load_recipe(name: str) -> type[Recipe]:
    """The recipe class named ``name``: a built-in one, or ``module:name`` for a user's
    recipe module (which registers itself on import)."""
    import importlib

    from ..errors import OvarError

    if ":" in name:
        module, name = name.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise OvarError(f"cannot import recipe module '{module}': {exc}") from None
    else:
        importlib.import_module("ovar.recipes.builtin")
    return get_recipe(name)


def list_recipes() -> list[str]:
    """Registered recipe names, sorted."""
    return sorted(_REGISTRY)
