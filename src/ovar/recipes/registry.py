"""The recipe registry: built-in recipes by name, or a user's ``module:name``."""

from __future__ import annotations

from typing import Callable, TypeVar

from ..config import ConfigError
from ..train.recipe import Recipe

R = TypeVar("R", bound=type[Recipe])


_REGISTRY: dict[str, type[Recipe]] = {}


def register_recipe(name: str) -> Callable[[R], R]:
    """Class decorator adding a user's :class:`Recipe` subclass under ``name`` (the
    built-in recipes are listed in :data:`ovar.hub.RECIPES` instead)."""

    def add(cls: R) -> R:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"recipe {name!r} is already registered ({existing.__qualname__})")
        _REGISTRY[name] = cls
        return cls

    return add


def get_recipe(name: str) -> type[Recipe]:
    """The built-in recipe ``name`` (:data:`ovar.hub.RECIPES`), else one a user module
    registered; ConfigError listing the known ones if none."""
    from ..hub import recipe_class

    found = recipe_class(name) or _REGISTRY.get(name)
    if found is None:
        raise ConfigError(f"unknown recipe {name!r} (known: {', '.join(list_recipes())})") from None
    return found


def load_recipe(name: str) -> type[Recipe]:
    """The recipe class named ``name``: a built-in one, or ``module:name`` for a user's
    recipe module (``name`` is a :class:`Recipe` class in it, or registered with
    :func:`register_recipe`)."""
    import importlib
    import sys

    from ..errors import OvarError

    if ":" in name:
        module, name = name.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise OvarError(f"cannot import recipe module '{module}': {exc}") from None
        found = getattr(sys.modules[module], name, None)
        if isinstance(found, type) and issubclass(found, Recipe):
            return found
    return get_recipe(name)


def list_recipes() -> list[str]:
    """Built-in and registered recipe names, sorted."""
    from ..hub import RECIPES

    return sorted({*RECIPES, *_REGISTRY})
